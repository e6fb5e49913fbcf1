"""fracture_d2: Detectron2-based fracture detection and localisation in radiographs."""

__version__ = "0.1.0"
