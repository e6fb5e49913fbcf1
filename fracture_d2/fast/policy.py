"""Where the switches of the batched heads are on when left at None ("auto", the default).

A switch is on by default exactly on the devices and in the modes where a benchmark showed it
faster than without at equal AP (the measurements and their commands: docs/speed.md). Switches
built for GPUs stay off there until a GPU run has measured them; ``True`` or ``False`` in the
config forces a switch everywhere.
"""

from __future__ import annotations

import torch

# switch -> {(device type, "training" | "inference")} where auto means on
AUTO_ON = {
    "BATCHED_HEADS": {("cpu", "training"), ("cpu", "inference")},
    "MATRIX_NMS": {("cpu", "inference")},
}


def switch_on(name: str, value, device, training: bool) -> bool:
    """Whether switch ``name`` (``FRACTURE.FAST.<name>``, set to ``value``) is on for a module
    running on ``device`` in training (True) or inference mode."""
    if value is not None:
        return bool(value)
    mode = "training" if training else "inference"
    return (torch.device(device).type, mode) in AUTO_ON[name]
