"""Plan a synthetic tree with exactly the counts of the public MURA-v1.1 release.

Studies per body part (negative, positive) are the release's; images per body part are those
of the MURA paper's table (they add up to the release's 36,808 train and 3,197 valid images);
patients are 11,184 (train) and 783 (valid), numbered like the release (valid continues after
train). About 1% of patients appear under a second body part, a quirk of the release. Each
study has 1-11 images. Used by ``generate_synthetic_mura(..., release_counts=True)`` to time
the converter at full scale (``tools/dev/benchmark_prepare_mura.py``).
"""

from __future__ import annotations

import numpy as np

# split -> part -> (negative studies, positive studies, images)
RELEASE_COUNTS = {
    "train": {
        "ELBOW": (1094, 660, 4931),
        "FINGER": (1280, 655, 5106),
        "FOREARM": (590, 287, 1825),
        "HAND": (1497, 521, 5543),
        "HUMERUS": (321, 271, 1272),
        "SHOULDER": (1364, 1457, 8379),
        "WRIST": (2134, 1326, 9752),
    },
    "valid": {
        "ELBOW": (92, 66, 465),
        "FINGER": (92, 83, 461),
        "FOREARM": (69, 64, 301),
        "HAND": (101, 66, 460),
        "HUMERUS": (68, 67, 288),
        "SHOULDER": (99, 95, 563),
        "WRIST": (140, 97, 659),
    },
}
RELEASE_PATIENTS = {"train": 11184, "valid": 783}
MAX_IMAGES_PER_STUDY = 11
CROSS_PART_SHARE = 0.01


def _spread(total: int, bins: int, rng, cap: int | None = None) -> np.ndarray:
    """``total`` items over ``bins`` bins: skewed (geometric) counts >= 1 (and <= ``cap``),
    then nudged at random until they add up exactly."""
    counts = rng.geometric(min(1.0, bins / total), bins)
    if cap:
        counts = np.minimum(counts, cap)
    while (diff := total - int(counts.sum())) != 0:
        step = 1 if diff > 0 else -1
        open_bins = np.flatnonzero(counts < (cap or total) if step > 0 else counts > 1)
        picks = rng.choice(open_bins, size=min(abs(diff), len(open_bins)), replace=False)
        counts[picks] += step
    return counts


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Largest-remainder split of ``total`` proportional to ``weights``, at least 1 each."""
    w = np.asarray(weights, float)
    raw = total * w / w.sum()
    n = np.maximum(1, np.floor(raw).astype(int))
    for i in np.argsort(-(raw - np.floor(raw)), kind="stable")[: total - n.sum()]:
        n[i] += 1
    return [int(x) for x in n]


def plan_release(seed: int):
    """Return ``(images, studies)``: images as ``(study path, image number, part, positive)``
    in path order, studies as ``(split, study path, label)``."""
    rng = np.random.default_rng(seed)
    images, studies, first_pid = [], [], 1
    for split, parts in RELEASE_COUNTS.items():
        n_patients = RELEASE_PATIENTS[split]
        names = list(parts)
        n_cross = int(round(CROSS_PART_SHARE * n_patients))
        # (patient, part) pairs per part, proportional to the part's studies.
        pairs_per_part = _apportion(n_patients + n_cross, [sum(parts[p][:2]) for p in names])
        pairs = [p for p, n in zip(names, pairs_per_part, strict=True) for _ in range(n)]
        order = rng.permutation(len(pairs))
        owner = {}  # pair index -> patient id
        for rank, j in enumerate(order[:n_patients]):
            owner[int(j)] = first_pid + rank
        first_part = {owner[j]: pairs[j] for j in owner}
        taken = set(first_part.items())
        for j in order[n_patients:]:
            while True:  # a second body part for a random patient
                pid = first_pid + int(rng.integers(n_patients))
                if (pid, pairs[j]) not in taken:
                    break
            owner[int(j)] = pid
            taken.add((pid, pairs[j]))
        plan = []
        for part in names:
            neg, pos, n_images = parts[part]
            idx = [j for j in range(len(pairs)) if pairs[j] == part]
            per_pair = _spread(neg + pos, len(idx), rng)
            labels = rng.permutation([0] * neg + [1] * pos)
            per_study = _spread(n_images, neg + pos, rng, MAX_IMAGES_PER_STUDY)
            s = 0
            for j, n_studies in zip(idx, per_pair, strict=True):
                for k in range(1, n_studies + 1):
                    plan.append((owner[j], part, k, int(labels[s]), int(per_study[s])))
                    s += 1
        for pid, part, k, label, n_images in sorted(plan):
            study = (
                f"MURA-v1.1/{split}/XR_{part}/patient{pid:05d}/"
                f"study{k}_{'positive' if label else 'negative'}/"
            )
            studies.append((split, study, label))
            images.extend((study, m, part, bool(label)) for m in range(1, n_images + 1))
        first_pid += n_patients
    return images, studies
