"""fracture_d2: Detectron2-based fracture detection and localisation in radiographs."""

import warnings

# Detectron2 scripts a few helpers with torch.jit at import; recent torch warns about that on
# every run. It is not actionable for users of this project, so it is silenced here only.
warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning
)

__version__ = "0.1.0"
