"""The model behind the REST service: a checkpoint through :class:`BatchPredictor` (the
project's fastest measured CPU path, ``FRACTURE.FAST`` switches included) or an exported
TorchScript/ONNX file, with the identity every answer carries."""

from __future__ import annotations

from fracture_d2.inference.predictor import BatchPredictor, check_weights

from .identity import model_identity
from .settings import LoadedModel


def load_served_model(
    cfg,
    config_file: str,
    exported: str | None = None,
    threshold: float = 0.5,
    score_method: str = "max",
) -> LoadedModel:
    """Load the model a service runs.

    Args:
        cfg: the model's frozen config (``MODEL.WEIGHTS`` for a checkpoint).
        config_file: the YAML it came from (names the model).
        exported: a ``.ts``/``.onnx`` file from tools/export_model.py to run instead of the
            checkpoint (``MODEL.WEIGHTS`` is then not read).
        threshold: the service's default operating point (part of the identity).
        score_method: the image score method (part of the identity).
    """
    size = cfg.INPUT.MIN_SIZE_TEST
    if exported is None:
        predictor = BatchPredictor(cfg)
        identity = model_identity(
            cfg, config_file, check_weights(cfg), "pytorch", threshold, score_method
        )
        return LoadedModel(predictor.run, identity, (size, size))
    from fracture_d2.export.runtime import ExportedPredictor

    predictor = ExportedPredictor(cfg, exported)
    keys = ("source_weights", "source_weights_sha256", "torch", "detectron2")
    source = {k: predictor.meta.get(k) for k in keys}
    identity = model_identity(
        cfg, config_file, exported, predictor.backend, threshold, score_method, source
    )
    return LoadedModel(predictor, identity, (size, size))
