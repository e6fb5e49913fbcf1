"""Write a synthetic dataset with exactly the on-disk layout of the MURA-v1.1 release.

Layout (as in the official release)::

    OUT/MURA-v1.1/{train,valid}/XR_<PART>/patientNNNNN/studyK_{positive,negative}/imageM.png
    OUT/MURA-v1.1/{train,valid}_image_paths.csv      one column, no header
    OUT/MURA-v1.1/{train,valid}_labeled_studies.csv  "<study path>/,<0|1>", no header
    OUT/boxes.csv   image_path,x_min,y_min,x_max,y_max  (MURA has no boxes; this stands in for
                    a user's annotation effort, in the format datasets/prepare_mura.py reads)

``release_counts=True`` reproduces the public release's exact counts (40,005 images, 14,656
studies, 11,967 patients; :mod:`.synth_mura_release`), e.g. with tiny images to time the
converter at full scale. ``rgb_fraction`` saves that share of images as 3-channel PNGs (MURA
has both).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..utils_io import atomic_open
from .synth_mura_release import plan_release
from .synth_radiograph import render_radiograph

logger = logging.getLogger(__name__)

# Share of MURA-v1.1 train studies per body part; the generator draws parts with these weights.
PART_WEIGHTS = {
    "ELBOW": 1754,
    "FINGER": 1935,
    "FOREARM": 877,
    "HAND": 2018,
    "HUMERUS": 592,
    "SHOULDER": 2821,
    "WRIST": 3460,
}


@dataclass
class ImageJob:
    """One image to render: its path relative to OUT and everything that decides its pixels."""

    rel_path: str
    part: str
    size: tuple
    n_fractures: int
    seed: tuple
    boxes: list = field(default_factory=list)
    rgb: bool = False


def _plan(patients: int, seed: int, valid_fraction: float, max_side: int):
    """Decide every patient, study, label and image (cheap, sequential, seeded)."""
    rng = np.random.default_rng(seed)
    parts = list(PART_WEIGHTS)
    weights = np.array([PART_WEIGHTS[p] for p in parts], float)
    n_valid = max(1, int(round(patients * valid_fraction))) if patients > 1 else 0
    jobs, studies = [], []
    for pid in range(1, patients + 1):
        split = "valid" if pid > patients - n_valid else "train"
        own = [rng.choice(parts, p=weights / weights.sum())]
        if rng.random() < 0.03:  # MURA quirk: one patient id under two body parts
            own.append(rng.choice([p for p in parts if p != own[0]]))
        for part in own:
            for k in range(1, int(rng.integers(1, 4)) + 1):
                positive = bool(rng.random() < 0.4)
                study = (
                    f"MURA-v1.1/{split}/XR_{part}/patient{pid:05d}/"
                    f"study{k}_{'positive' if positive else 'negative'}/"
                )
                studies.append((split, study, int(positive)))
                for m in range(1, int(rng.integers(1, 6)) + 1):
                    seed_key = (seed, pid, parts.index(part), k, m)
                    jobs.append(_image_job(rng, study, m, part, positive, max_side, seed_key))
    return jobs, studies


def _image_job(rng, study, m, part, positive, max_side, seed_key) -> ImageJob:
    long_side = int(rng.integers(int(0.75 * max_side), max_side + 1))
    short = int(long_side * rng.uniform(0.6, 1.0))
    size = (short, long_side) if rng.random() < 0.7 else (long_side, short)
    n_frac = int(rng.choice([1, 2], p=[0.8, 0.2])) if positive else 0
    return ImageJob(f"{study}image{m}.png", part, size, n_frac, seed_key)


def _plan_release(seed: int, max_side: int):
    """Every image of a tree with the release's exact counts (see synth_mura_release)."""
    images, studies = plan_release(seed)
    rng = np.random.default_rng(seed + 2)
    parts = list(PART_WEIGHTS)
    jobs = []
    for study, m, part, positive in images:
        pid = int(study.split("/patient")[1][:5])
        k = int(study.rstrip("/").rsplit("/study", 1)[1].split("_")[0])
        key = (seed, pid, parts.index(part), k, m)
        jobs.append(_image_job(rng, study, m, part, positive, max_side, key))
    return jobs, studies


def _write_job(args) -> list:
    job, root = args
    img, boxes = render_radiograph(
        job.part, job.size, job.n_fractures, np.random.default_rng(list(job.seed))
    )
    if job.rgb:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    path = Path(root) / job.rel_path.split("/", 1)[1]  # rel_path starts with MURA-v1.1/
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")
    return boxes


def generate_synthetic_mura(
    out: str | os.PathLike,
    patients: int,
    seed: int = 0,
    valid_fraction: float = 0.15,
    max_side: int = 512,
    box_fraction: float = 1.0,
    workers: int | None = None,
    overwrite: bool = False,
    release_counts: bool = False,
    rgb_fraction: float = 0.0,
) -> dict:
    """Generate ``OUT/MURA-v1.1`` and ``OUT/boxes.csv``; deterministic for a seed.

    Args:
        out: output folder; ``MURA-v1.1`` and ``boxes.csv`` are created inside it.
        patients: number of patients (the last ``valid_fraction`` of them form ``valid``).
        seed: random seed; the same seed gives byte-identical files.
        valid_fraction: share of patients in the official-valid split.
        max_side: longest image side in pixels (MURA: 512); sizes vary down to 0.75x of it.
        box_fraction: share of positive images whose boxes go into ``boxes.csv``, standing in
            for a partial annotation effort (1.0: all of them).
        workers: rendering processes (default: all cores).
        overwrite: replace an existing ``OUT/MURA-v1.1``.
        release_counts: reproduce the public release's exact counts (``patients`` and
            ``valid_fraction`` are then ignored).
        rgb_fraction: share of images saved as 3-channel PNGs.

    Returns:
        A summary dict (patients, studies, images, boxes per split).
    """
    if patients < 1 and not release_counts:
        raise ValueError(f"--patients must be >= 1, got {patients}")
    out = Path(out)
    final = out / "MURA-v1.1"
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists; pass --overwrite to replace it")
    tmp = out / ".MURA-v1.1.tmp"  # built aside and renamed, so a failed run leaves no half tree
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if release_counts:
        jobs, studies = _plan_release(seed, max_side)
        patients = len({j.rel_path.split("/")[3] for j in jobs})
    else:
        jobs, studies = _plan(patients, seed, valid_fraction, max_side)
    if rgb_fraction > 0:
        rgb = np.random.default_rng(seed + 3).random(len(jobs)) < rgb_fraction
        for job, flag in zip(jobs, rgb, strict=True):
            job.rgb = bool(flag)
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        results = pool.map(_write_job, [(j, tmp) for j in jobs], chunksize=16)
        for job, boxes in tqdm(
            zip(jobs, results, strict=True),
            total=len(jobs),
            desc="rendering",
            unit="img",
            disable=len(jobs) < 200,
        ):
            job.boxes = boxes
    _write_csvs(tmp, jobs, studies)
    rng = np.random.default_rng(seed + 1)
    n_boxes = _write_boxes(out / "boxes.csv", jobs, box_fraction, rng)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    summary = {
        "root": str(final),
        "patients": patients,
        "studies": len(studies),
        "images": len(jobs),
        "boxes": n_boxes,
        "images_per_split": {
            s: sum(j.rel_path.split("/")[1] == s for j in jobs) for s in ("train", "valid")
        },
    }
    return summary


def _write_csvs(root: Path, jobs, studies) -> None:
    for split in ("train", "valid"):
        with open(root / f"{split}_image_paths.csv", "w", newline="") as f:
            for j in jobs:
                if j.rel_path.split("/")[1] == split:
                    f.write(j.rel_path + "\n")
        with open(root / f"{split}_labeled_studies.csv", "w", newline="") as f:
            for s, study, label in studies:
                if s == split:
                    f.write(f"{study},{label}\n")


def _write_boxes(path: Path, jobs, box_fraction: float, rng) -> int:
    n = 0
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["image_path", "x_min", "y_min", "x_max", "y_max"])
        for j in jobs:
            if j.boxes and rng.random() < box_fraction:
                for b in j.boxes:
                    w.writerow([j.rel_path] + [int(v) for v in b])
                    n += 1
    return n


__all__ = ["generate_synthetic_mura"]
