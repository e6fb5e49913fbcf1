"""Export a trained detector to TorchScript (tracing) and ONNX, with its identity inside.

Both formats come from one trace of Detectron2's ``TracingAdapter`` around the model's
``inference(..., do_postprocess=False)``: one preprocessed float32 image (3 x H x W, any size)
in; boxes (in that image's coordinates), scores and class indices out. Resizing to the test
size before and scaling the boxes back to the original pixels after stay in Python
(:class:`fracture_d2.export.runtime.ExportedPredictor`), exactly as the checkpoint's
predictor does them. Detectron2 writes its R-CNN so that a trace keeps the image size and
box counts symbolic; the parity check (:mod:`.parity`) tests this on images of other sizes.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import detectron2
import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.export import TracingAdapter
from detectron2.modeling import build_model

from fracture_d2.inference.results import categories
from fracture_d2.utils_io import atomic_open

from .runtime import FORMAT, METADATA_KEY, Preprocess

OUTPUT_NAMES = ("boxes", "scores", "classes")
ONNX_OPSET = 17  # RoiAlign with aligned=True (opset 16+), as onnxruntime runs it


def eager_model(cfg) -> torch.nn.Module:
    """The config's model with ``MODEL.WEIGHTS`` loaded, float32, in eval mode, without the
    project's speed switches (channels-last, compilation: nothing a trace should record) and
    with the batched heads' switches off: a trace records Detectron2's own per-image code (the
    batched paths read counts to the host, which a trace would freeze as constants)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.FRACTURE.FAST.BATCHED_HEADS = cfg.FRACTURE.FAST.MATRIX_NMS = False
    cfg.freeze()
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model


def _boxes_scores_classes(model, inputs):
    inst = model.inference(inputs, do_postprocess=False)[0]
    return inst.pred_boxes.tensor, inst.scores, inst.pred_classes


def metadata(cfg, config_file: str, weights_sha256: str) -> dict:
    """What an exported file records about its model (checked again when it is loaded)."""
    return {
        "format": FORMAT,
        "config_name": Path(config_file).stem,
        "source_weights": Path(cfg.MODEL.WEIGHTS).name,
        "source_weights_sha256": weights_sha256,
        "classes": categories(cfg),
        "input_format": cfg.INPUT.FORMAT,
        "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
        "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
        "outputs": list(OUTPUT_NAMES),
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
    }


def _adapter(model, sample: torch.Tensor) -> TracingAdapter:
    # eval(): an exporter restores the adapter's own mode afterwards, which would otherwise
    # put the wrapped model back into training mode.
    return TracingAdapter(model, [{"image": sample}], _boxes_scores_classes).eval()


def export_torchscript(model, sample: torch.Tensor, path, meta: dict) -> Path:
    """Trace ``model`` on one preprocessed image and save TorchScript (metadata inside)."""
    adapter = _adapter(model, sample)
    with torch.no_grad(), warnings.catch_warnings():
        # Detectron2's asserts and shape arithmetic warn during tracing by design.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
    with atomic_open(path, "wb") as f:
        torch.jit.save(traced, f, _extra_files={METADATA_KEY: json.dumps(meta)})
    return Path(path)


def export_onnx(model, sample: torch.Tensor, path, meta: dict) -> Path:
    """Export ``model`` to ONNX (opset :data:`ONNX_OPSET`, dynamic image size and box count)
    through PyTorch's TorchScript-based exporter; metadata in the model's properties."""
    import onnx

    adapter, buf = _adapter(model, sample), io.BytesIO()
    dynamic = {"image": {1: "height", 2: "width"}} | {n: {0: "detections"} for n in OUTPUT_NAMES}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # dynamo=False: torch.export cannot follow the R-CNN's data-dependent box counts
        torch.onnx.export(
            adapter,
            adapter.flattened_inputs,
            buf,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["image"],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
        )
    proto = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(proto)
    with atomic_open(path, "wb") as f:
        f.write(proto.SerializeToString())
    return Path(path)


def sample_tensor(cfg, gray: np.ndarray) -> torch.Tensor:
    """A gray image preprocessed as at test time (resize, channels), float32 C x H x W."""
    return Preprocess(cfg)(gray)
