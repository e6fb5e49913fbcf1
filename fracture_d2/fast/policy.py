"""Where the switches of the batched heads are on when left at None ("auto", the default).

A switch is on by default exactly on the devices and in the modes where a benchmark showed it
faster than without at equal AP (the measurements and their commands: docs/speed.md). Switches
built for GPUs stay off there until a GPU run has measured them; ``True`` or ``False`` in the
config forces a switch everywhere.
"""

from __future__ import annotations

import torch
from detectron2.utils.events import get_event_storage

# switch -> {(device type, "training" | "inference")} where auto means on. Empty for now: on the
# CPU neither switch has measured faster than without it (the matrix NMS slower), and neither
# has been measured on a GPU yet. A GPU benchmark that shows one faster adds ("cuda", mode).
AUTO_ON: dict[str, set[tuple[str, str]]] = {
    "BATCHED_HEADS": set(),
    "MATRIX_NMS": set(),
}


def switch_on(name: str, value, device, training: bool) -> bool:
    """Whether switch ``name`` (``FRACTURE.FAST.<name>``, set to ``value``) is on for a module
    running on ``device`` in training (True) or inference mode."""
    if value is not None:
        return bool(value)
    mode = "training" if training else "inference"
    return (torch.device(device).type, mode) in AUTO_ON[name]


def fast_switches(cfg) -> dict:
    """The constructor arguments of the batched heads from ``FRACTURE.FAST``."""
    fast = cfg.FRACTURE.FAST
    return {
        "batched": fast.BATCHED_HEADS,
        "matrix_nms": fast.MATRIX_NMS,
        "metrics_period": max(1, fast.METRICS_PERIOD),
    }


def log_now(module) -> bool:
    """Whether this iteration writes metrics (``FRACTURE.FAST.METRICS_PERIOD``)."""
    return (get_event_storage().iter + 1) % module.metrics_period == 0
