"""Patient-level, stratified, seeded train/val splitting."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def split_patients(strata: dict, val_fraction: float, seed: int) -> set:
    """Choose validation patients, stratified.

    Args:
        strata: patient id -> stratum key (e.g. ``(body_part, label)``); a patient is assigned as
            a whole, so its images never land in two splits.
        val_fraction: share of patients per stratum sent to validation (rounded; a stratum with
            at least two patients gives at least one when the fraction is positive).
        seed: random seed; the result depends only on the inputs, not on dict order.

    Returns:
        The set of validation patient ids.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups = defaultdict(list)
    for patient, key in strata.items():
        groups[key].append(patient)
    rng = np.random.default_rng(seed)
    val = set()
    for key in sorted(groups, key=repr):
        patients = sorted(groups[key])
        n = int(round(len(patients) * val_fraction))
        if val_fraction > 0 and n == 0 and len(patients) >= 2:
            n = 1
        order = rng.permutation(len(patients))
        val.update(patients[j] for j in order[:n])
    return val
