"""Speed of the project's training and inference side by side with stock Detectron2, in one
process, on the same config, data and device (``tools/benchmark.py``)."""
