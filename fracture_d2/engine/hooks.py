"""Training hooks: best checkpoint with resumable state, validation loss, early stopping."""

from __future__ import annotations

import logging
import math
import operator

import torch
from detectron2.data import build_detection_test_loader
from detectron2.engine import hooks
from detectron2.engine.train_loop import HookBase
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)


def _is_eval_step(trainer, period: int) -> bool:
    """``EvalHook``'s condition for evaluating in ``after_step`` (the last iteration's
    evaluation happens in ``after_train`` instead)."""
    next_iter = trainer.iter + 1
    return period > 0 and next_iter % period == 0 and next_iter != trainer.max_iter


class BestModelCheckpointer(hooks.BestCheckpointer):
    """Detectron2's ``BestCheckpointer`` whose best metric survives ``--resume``.

    Its state (best value and iteration) is saved in every trainer checkpoint, so a resumed
    run only replaces ``model_best.pth`` with a truly better model.
    """

    def state_dict(self):
        return {"best_metric": self.best_metric, "best_iter": self.best_iter}

    def load_state_dict(self, state):
        self.best_metric, self.best_iter = state["best_metric"], state["best_iter"]


class EarlyStop(BaseException):  # noqa: N818
    """Raised by :class:`EarlyStopping` to end ``TrainerBase.train`` after the current step.

    A ``BaseException``, so Detectron2's loop does not log it as a crash (it catches
    ``Exception``) while its ``finally: after_train()`` still runs; ``Trainer.train`` catches it.
    """


class EarlyStopping(HookBase):
    """Stop after ``patience`` evaluations in a row without improving ``metric``.

    Placed after ``EvalHook``; the decision is made on the main process (where evaluation
    results live) and shared with all ranks. Its state is checkpointed, so a resumed run that
    had already stopped stays stopped.
    """

    def __init__(self, eval_period: int, metric: str, mode: str, patience: int, checkpointer):
        self._period, self._metric, self._patience = eval_period, metric, patience
        self._better = operator.gt if mode == "max" else operator.lt
        self._checkpointer = checkpointer
        self.best, self.bad_evals, self.stopped_at = None, 0, None

    def state_dict(self):
        return {"best": self.best, "bad_evals": self.bad_evals, "stopped_at": self.stopped_at}

    def load_state_dict(self, state):
        self.best, self.bad_evals = state["best"], state["bad_evals"]
        self.stopped_at = state["stopped_at"]

    def before_train(self):
        if self.stopped_at is not None:
            raise EarlyStop(
                f"training had stopped early at iteration {self.stopped_at}; " "nothing to resume"
            )

    def _update(self) -> bool:
        latest = self.trainer.storage.latest().get(self._metric)
        if latest is None:
            logger.warning(f"early stopping: metric {self._metric} was not computed")
            return False
        value = latest[0]
        if math.isnan(value):
            self.bad_evals += 1
        elif self.best is None or self._better(value, self.best):
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
        logger.info(
            f"early stopping: {self._metric}={value:.4f}, best {self.best}, "
            f"{self.bad_evals}/{self._patience} evaluations without improvement"
        )
        return self.bad_evals >= self._patience

    def after_step(self):
        if not _is_eval_step(self.trainer, self._period):
            return
        stop = self._update() if comm.is_main_process() else False
        stop = comm.all_gather(stop)[0] if comm.get_world_size() > 1 else stop
        if stop:
            self.stopped_at = self.trainer.iter
            self._checkpointer.save("model_final", iteration=self.trainer.iter)
            raise EarlyStop(
                f"early stopping at iteration {self.trainer.iter}: {self._metric} "
                f"did not improve for {self._patience} evaluations "
                f"(best {self.best})"
            )


class ValidationLoss(HookBase):
    """Log the training losses on a validation set (no augmentation, no gradient).

    Runs at the evaluation period. The model stays in training mode (Detectron2 only computes
    losses then) but batch-norm layers are switched to eval mode, so validation never updates
    running statistics. Losses are averaged over the whole set and over ranks and stored as
    ``val/<loss name>`` (hence in metrics.json and TensorBoard).
    """

    def __init__(self, eval_period: int, dataset_name: str, mapper):
        self._period, self._dataset, self._mapper = eval_period, dataset_name, mapper
        self._loader = None

    def after_step(self):
        if _is_eval_step(self.trainer, self._period):
            self.trainer.storage.put_scalars(**self.compute(), smoothing_hint=False)

    def after_train(self):
        if self.trainer.iter + 1 >= self.trainer.max_iter:  # as EvalHook: a finished run
            self.trainer.storage.put_scalars(**self.compute(), smoothing_hint=False)

    @torch.no_grad()
    def compute(self) -> dict:
        """Mean losses on the validation set: ``{"val/loss_cls": ..., "val/total_loss": ...}``."""
        if self._loader is None:
            self._loader = build_detection_test_loader(
                dataset=_dataset_dicts(self._dataset), mapper=self._mapper, num_workers=0
            )
        model = self.trainer.model
        model = model.module if isinstance(model, DistributedDataParallel) else model
        bn = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training]
        for m in bn:
            m.eval()
        sums, n = {}, 0
        try:
            for batch in self._loader:
                for k, v in model(batch).items():  # summed on the device: read once, below
                    sums[k] = sums.get(k, 0.0) + v.detach().double() * len(batch)
                n += len(batch)
        finally:
            for m in bn:
                m.train()
        if sums:
            sums = dict(zip(sums, torch.stack(list(sums.values())).tolist(), strict=True))
        totals = comm.all_gather((sums, n))
        n_all = sum(t[1] for t in totals)
        means = {f"val/{k}": sum(t[0].get(k, 0.0) for t in totals) / max(n_all, 1) for k in sums}
        means["val/total_loss"] = sum(means.values())
        logger.info(
            "validation loss on %s (%d images): %s",
            self._dataset,
            n_all,
            ", ".join(f"{k}={v:.4f}" for k, v in means.items()),
        )
        return means


def _dataset_dicts(name: str):
    from detectron2.data import get_detection_dataset_dicts

    return get_detection_dataset_dicts([name], filter_empty=False)


class WriteAfterEval(HookBase):
    """Flush the JSON/TensorBoard writers right after each periodic evaluation.

    Detectron2's ``PeriodicWriter`` writes every 20 iterations and only the latest value of
    each scalar; an evaluation at an iteration that is not a multiple of 20 would be
    overwritten by the next one before being written. Flushing here keeps every evaluation in
    metrics.json and TensorBoard (the writers skip what they already wrote).
    """

    def __init__(self, eval_period: int, writers: list):
        self._period = eval_period
        self._writers = [w for w in writers if not isinstance(w, CommonMetricPrinter)]

    def after_step(self):
        if _is_eval_step(self.trainer, self._period):
            for w in self._writers:
                w.write()
