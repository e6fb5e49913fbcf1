"""Export a checkpoint to the requested formats and check each file against it (the body of
tools/export_model.py); the report goes to ``OUT/export_report.json``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fracture_d2.utils_io import sha256_file, write_json_atomic

from .parity import compare
from .runtime import ExportedPredictor, Preprocess
from .trace import eager_model, export_onnx, export_torchscript, metadata

FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}
EXPORTERS = {"torchscript": export_torchscript, "onnx": export_onnx}


def float32_cfg(cfg):
    """A copy of ``cfg`` whose predictor runs in float32 (exports are float32; an autocast
    reference would differ by more than the parity bounds on CPUs with bfloat16)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.FRACTURE.FAST.INFERENCE_DTYPE = "float32"
    cfg.freeze()
    return cfg


def _timed(predict, grays) -> tuple[list, float]:
    t0 = time.perf_counter()
    out = [predict([g])[0] for g in grays]  # one at a time, as the exported files run
    return out, 1000 * (time.perf_counter() - t0) / max(1, len(grays))


def export_and_check(
    cfg,
    config_file: str,
    out_dir,
    formats=("torchscript", "onnx"),
    check_images: list[np.ndarray] = (),
    sample: np.ndarray | None = None,
    iou_min: float = 0.99,
    score_tol: float = 1e-3,
) -> dict:
    """Write the exported files and, given images, compare each with the checkpoint.

    Args:
        cfg: frozen config with ``MODEL.WEIGHTS``.
        config_file: the YAML it came from (recorded in the files).
        out_dir: where ``model.ts``, ``model.onnx`` and ``export_report.json`` go.
        formats: any of :data:`FILES`.
        check_images: 2-D uint8 images for the parity check (none: no check).
        sample: the image the trace runs on (default: the first check image).
        iou_min, score_tol: the parity bounds.

    Returns:
        The report: files written, formats that failed to export and why, parity per format
        (:class:`fracture_d2.export.Parity` fields) and ms per image of each backend.
    """
    from fracture_d2.inference import BatchPredictor

    out = Path(out_dir)
    model = eager_model(cfg)
    meta = metadata(cfg, config_file, sha256_file(cfg.MODEL.WEIGHTS))
    if sample is None:
        if not len(check_images):
            raise ValueError("export needs a sample image to trace (or check images)")
        sample = check_images[0]
    tensor = Preprocess(cfg)(sample)
    report = {"source": meta, "files": {}, "failed": {}, "parity": {}, "ms_per_image": {}}
    for fmt in formats:
        try:
            path = EXPORTERS[fmt](model, tensor, out / FILES[fmt], meta)
            report["files"][fmt] = str(path)
        except Exception as e:  # an operator without an export: report it, try the others
            report["failed"][fmt] = f"{type(e).__name__}: {e}".splitlines()[0]
    if len(check_images):
        reference, ms = _timed(BatchPredictor(float32_cfg(cfg)), check_images)
        report["ms_per_image"]["pytorch"] = round(ms, 2)
        for fmt, path in report["files"].items():
            other, ms = _timed(ExportedPredictor(cfg, path), check_images)
            report["ms_per_image"][fmt] = round(ms, 2)
            report["parity"][fmt] = compare(reference, other, iou_min, score_tol).as_dict()
    report["ok"] = not report["failed"] and all(p["ok"] for p in report["parity"].values())
    write_json_atomic(out / "export_report.json", report, indent=1)
    return report
