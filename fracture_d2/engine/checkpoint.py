"""Atomic checkpoint writes: a kill at any moment never leaves a truncated file behind."""

from __future__ import annotations

from detectron2.checkpoint import DetectionCheckpointer

from fracture_d2.utils_io import atomic_open


class AtomicPathManager:
    """Wraps an iopath ``PathManager``: local ``open`` for writing goes through a temp file.

    fvcore's ``Checkpointer.save`` and ``tag_last_checkpoint`` write through
    ``self.path_manager.open``; swapping in this wrapper makes both ``model_*.pth`` and
    ``last_checkpoint`` atomic without copying their code.
    """

    def __init__(self, base):
        self._base = base

    def __getattr__(self, name):
        return getattr(self._base, name)

    def open(self, path, mode="r", *args, **kwargs):
        """Local writes: :func:`fracture_d2.utils_io.atomic_open`, a context manager (fvcore
        writes checkpoints and the ``last_checkpoint`` tag in ``with`` blocks); the rest: the
        wrapped manager's ``open``."""
        local = "://" not in str(path)
        if local and any(m in mode for m in "wx") and "+" not in mode:
            return atomic_open(path, mode.replace("x", "w"), *args, **kwargs)
        return self._base.open(path, mode, *args, **kwargs)


class AtomicCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer whose checkpoints and ``last_checkpoint`` tag are written
    atomically (its path manager wrapped in :class:`AtomicPathManager`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path_manager = AtomicPathManager(self.path_manager)


class UntaggedCheckpointer(AtomicCheckpointer):
    """A checkpointer whose saves do not move ``last_checkpoint`` (used for ``model_best``).

    Detectron2's ``BestCheckpointer`` saves through the checkpointer it is given; with the
    trainer's, ``last_checkpoint`` would then name ``model_best.pth`` and a later ``--resume``
    would restart from the best (older) iteration instead of the latest.
    """

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        return None
