"""The project's Trainer: Detectron2's DefaultTrainer with radiograph data, medical-research
hooks and speed switches. Each override extends what ``super()`` builds."""

from __future__ import annotations

import logging
import os
import weakref

import torch
from detectron2.data import build_detection_train_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from detectron2.utils.logger import setup_logger

from fracture_d2 import fast
from fracture_d2.data.mapper import RadiographMapper
from fracture_d2.data.samplers import NegativeCapTrainingSampler
from fracture_d2.data.training_set import training_dicts
from fracture_d2.evaluation.evaluator import (
    AnnotatedCOCOEvaluator,
    FractureEvaluator,
    eval_options,
)

from .checkpoint import AtomicCheckpointer, UntaggedCheckpointer
from .hooks import (
    BestModelCheckpointer,
    EarlyStop,
    EarlyStopping,
    ValidationLoss,
    WriteAfterEval,
)
from .tta import test_with_tta

logger = logging.getLogger("fracture_d2")


def val_dataset(cfg) -> str:
    """The dataset used for validation loss: ``FRACTURE.VAL_DATASET`` or ``DATASETS.TEST[0]``."""
    return cfg.FRACTURE.VAL_DATASET or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")


def learns_from_image_labels(cfg) -> bool:
    """Whether ``cfg``'s meta-architecture learns from image labels alone (it then trains on
    image-label-only positives too)."""
    from detectron2.modeling import META_ARCH_REGISTRY

    arch = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    return bool(getattr(arch, "learns_from_image_labels", False))


def _on_device(loader, cfg):
    """``loader``, its batches moved to the GPU by non-blocking copies with
    ``DATALOADER.PIN_MEMORY`` on a CUDA device (the model then finds them in place)."""
    if cfg.DATALOADER.PIN_MEMORY and cfg.MODEL.DEVICE.startswith("cuda"):
        return fast.DeviceBatches(loader, cfg.MODEL.DEVICE)
    return loader


class _DroppedBoxCounter:
    """Wrap a train loader: log how many boxes augmentation dropped in each batch."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            try:
                storage = get_event_storage()
            except AssertionError:  # iterated outside a training loop (e.g. in a test)
                storage = None
            if storage is not None:
                storage.put_scalar(
                    "data/aug_dropped_boxes", sum(d.get("aug_dropped_boxes", 0) for d in batch)
                )
            yield batch


class Trainer(DefaultTrainer):
    """DefaultTrainer for radiographs.

    - data: :class:`RadiographMapper` (albumentations from ``INPUT.RADIOGRAPH_AUG``), negatives
      kept, optional negative:positive cap (``DATALOADER.NEG_POS_RATIO``) and share of
      image-label-only positives (``DATALOADER.IMAGE_LABEL_SHARE``);
    - evaluation: COCOEvaluator (pure-Python pycocotools) over annotated images, plus
      FractureEvaluator (FROC, image/study level, CIs) unless ``FRACTURE.EVAL.ENABLED`` False;
    - hooks: ``model_best.pth`` by ``SOLVER.BEST_CHECKPOINT``, validation loss, early stopping,
      atomic checkpoints;
    - precision: ``SOLVER.AMP`` with ``PRECISION`` float16 or bfloat16 (CUDA), TF32 switch.
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__, but with the model wrapped for DDP without device ids on
        # CPU processes (gloo): Detectron2 always passes device_ids=[local_rank], which DDP
        # rejects for a CPU module.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        fast.apply_backend_flags(cfg)
        if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
            raise ValueError(
                "SOLVER.AMP.ENABLED needs a CUDA device (Detectron2's AMPTrainer); "
                f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r}"
            )
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        cpu = not cfg.MODEL.DEVICE.startswith("cuda")
        ddp_kwargs = {"device_ids": None} if cpu else {}
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_kwargs)
        self._trainer = self._train_loop(cfg, model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @staticmethod
    def _train_loop(cfg, model, data_loader, optimizer):
        """Detectron2's SimpleTrainer, or AMPTrainer with ``SOLVER.AMP.PRECISION``; losses
        gathered every ``FRACTURE.FAST.METRICS_PERIOD`` iterations."""
        period = max(1, cfg.FRACTURE.FAST.METRICS_PERIOD)
        if not cfg.SOLVER.AMP.ENABLED:
            return SimpleTrainer(model, data_loader, optimizer, gather_metric_period=period)
        precision = fast.amp_dtype(cfg)
        # bf16 has float32's range: no loss scaling, and so no host-device sync per step for the
        # scaler's inf check (states of either kind load into the other)
        scaler = torch.amp.GradScaler("cuda", enabled=precision != torch.bfloat16)
        return AMPTrainer(
            model,
            data_loader,
            optimizer,
            gather_metric_period=period,
            grad_scaler=scaler,
            precision=precision,
        )

    @classmethod
    def build_model(cls, cfg):
        return fast.prepare_model(super().build_model(cfg), cfg)

    @classmethod
    def build_optimizer(cls, cfg, model):
        """Detectron2's optimizer; its per-parameter gradient clipping (``SOLVER.CLIP_GRADIENTS``)
        done for all parameters at once with ``FRACTURE.FAST.FUSED_GRAD_CLIP`` (the same
        gradients: :mod:`fracture_d2.fast.grad_clip`)."""
        if cfg.FRACTURE.FAST.FUSED_GRAD_CLIP and cfg.SOLVER.CLIP_GRADIENTS.ENABLED:
            return fast.build_optimizer(cfg, model)
        return super().build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        """The radiograph loader (see the class doc); with ``DATALOADER.PIN_MEMORY`` on a GPU its
        batches reach the device through non-blocking copies (:class:`fast.DeviceBatches`)."""
        return _on_device(cls._radiograph_loader(cfg), cfg)

    @classmethod
    def _radiograph_loader(cls, cfg):
        mapper = RadiographMapper(cfg, is_train=True)
        workers = cfg.DATALOADER.NUM_WORKERS > 0
        kwargs = {
            "pin_memory": bool(cfg.DATALOADER.PIN_MEMORY),
            "persistent_workers": bool(cfg.DATALOADER.PERSISTENT_WORKERS) and workers,
        }
        dataset = training_dicts(cfg, learns_from_image_labels(cfg))
        ratio, share = cfg.DATALOADER.NEG_POS_RATIO, cfg.DATALOADER.IMAGE_LABEL_SHARE
        if ratio <= 0 and share <= 0:
            loader = build_detection_train_loader(cfg, mapper=mapper, dataset=dataset, **kwargs)
            return _DroppedBoxCounter(loader)
        if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
            raise ValueError(
                "DATALOADER.NEG_POS_RATIO / IMAGE_LABEL_SHARE > 0 replace TrainingSampler; they "
                f"cannot be combined with {cfg.DATALOADER.SAMPLER_TRAIN}"
            )
        sampler = NegativeCapTrainingSampler(
            dataset, max(ratio, 0.0), seed=cfg.SEED, image_label_share=share
        )
        logger.info(
            f"NegativeCapTrainingSampler: {sampler.epoch_size} box-complete images per epoch "
            + (f"(negatives capped at {ratio}:1)" if ratio > 0 else "(every negative)")
            + (
                f"; image-label-only positives are {sampler.image_label_share:g} of each batch"
                if sampler.image_label_share
                else ""
            )
        )
        return _DroppedBoxCounter(
            build_detection_train_loader(
                cfg, mapper=mapper, dataset=dataset, sampler=sampler, **kwargs
            )
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        from detectron2.data import build_detection_test_loader

        mapper = RadiographMapper(cfg, is_train=False)
        return _on_device(build_detection_test_loader(cfg, dataset_name, mapper=mapper), cfg)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate like ``DefaultTrainer.test``, under ``FRACTURE.FAST.INFERENCE_DTYPE`` and,
        with ``FRACTURE.FAST.STATIC_INFERENCE``, through the static-shape inference path."""
        with fast.inference_autocast(cfg):
            return super().test(cfg, fast.inference_model(model, cfg), evaluators)

    @classmethod
    def test_with_TTA(cls, cfg, model):  # noqa: N802 (Detectron2's tools/train_net.py name)
        """Evaluate with Detectron2's test-time augmentation (``TEST.AUG.*``; :mod:`.tta`)."""
        return test_with_tta(cls, cfg, model)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        coco = AnnotatedCOCOEvaluator(
            dataset_name,
            tasks=("bbox",),
            output_dir=output_folder,
            use_fast_impl=False,
        )
        if not cfg.FRACTURE.EVAL.ENABLED:
            return coco
        return DatasetEvaluators(
            [coco, FractureEvaluator(dataset_name, output_folder, eval_options(cfg))]
        )

    def build_hooks(self):
        ret = super().build_hooks()
        cfg, period = self.cfg, self.cfg.TEST.EVAL_PERIOD
        if period <= 0:
            return ret
        i = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
        extra_before, extra_after = [], []
        if cfg.FRACTURE.VAL_LOSS and val_dataset(cfg):
            mapper = RadiographMapper(cfg, is_train=True, augment=False)
            extra_before.append(ValidationLoss(period, val_dataset(cfg), mapper))
        best = cfg.SOLVER.BEST_CHECKPOINT
        if best.ENABLED and comm.is_main_process():
            untagged = UntaggedCheckpointer(self.model, cfg.OUTPUT_DIR)
            extra_after.append(BestModelCheckpointer(period, untagged, best.METRIC, best.MODE))
        if cfg.SOLVER.EARLY_STOP.PATIENCE > 0:
            extra_after.append(
                EarlyStopping(
                    period,
                    best.METRIC,
                    best.MODE,
                    cfg.SOLVER.EARLY_STOP.PATIENCE,
                    self.checkpointer,
                )
            )
        writer = next((h for h in ret if isinstance(h, hooks.PeriodicWriter)), None)
        if writer is not None:  # main process only
            extra_after.append(WriteAfterEval(period, writer._writers))
        return ret[:i] + extra_before + [ret[i]] + extra_after + ret[i + 1 :]

    def train(self):
        """Train; an early stop ends training normally (returns the last evaluation)."""
        start = self.start_iter
        try:
            return super().train()
        except EarlyStop as stop:
            logger.info(str(stop))
            return getattr(self, "_last_eval_results", None)
        finally:
            logger.info(f"rank {comm.get_rank()}: ran iterations {start}..{self.iter}")
