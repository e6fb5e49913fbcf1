"""Pictures: GT vs prediction panels, grid sheets, Grad-CAM/objectness heatmaps, curves and an
offline index.html (``tools/visualize.py``)."""

from .report import VisualizeOptions, visualize

__all__ = ["VisualizeOptions", "visualize"]
