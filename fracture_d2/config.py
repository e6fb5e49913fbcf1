"""Project config keys, added on top of Detectron2's defaults.

Every key can be set in YAML or as a trailing ``KEY VALUE`` on the command line.
"""

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg


def add_fracture_config(cfg: CN) -> CN:
    """Add fracture_d2's keys (with their defaults) to a Detectron2 config, in place."""
    cfg.FRACTURE = CN()
    # Registered dataset used for the validation loss and model selection; "" = DATASETS.TEST[0].
    cfg.FRACTURE.VAL_DATASET = ""
    # COCOEvaluator tasks the Trainer asks for (the project detects boxes only).
    cfg.FRACTURE.EVAL_TASKS = ("bbox",)
    return cfg


def get_fracture_cfg() -> CN:
    """Detectron2's default config with the project's keys added (not frozen)."""
    return add_fracture_config(get_cfg())
