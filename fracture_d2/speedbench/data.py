"""Synthetic data at MURA sizes for speed benchmarks (generated and prepared in a temp root)."""

from __future__ import annotations

from pathlib import Path

from fracture_d2.data.convert_mura import prepare_mura
from fracture_d2.data.synth_mura import generate_synthetic_mura


def synthetic_benchmark_data(root: Path, patients: int = 30, seed: int = 0) -> Path:
    """Generate MURA-layout images (longest side 512, like MURA) and prepare them as
    ``bench_synthetic_{train,val,test}`` under ``root`` (a ``$DETECTRON2_DATASETS`` root)."""
    raw = root / "raw"
    generate_synthetic_mura(raw, patients=patients, seed=seed, max_side=512)
    prepare_mura(
        raw / "MURA-v1.1", [raw / "boxes.csv"], root / "bench_synthetic", name="bench_synthetic"
    )
    return root
