"""Atomic checkpoint writes: a kill at any moment never leaves a truncated file behind."""

from __future__ import annotations

import os
import tempfile

from detectron2.checkpoint import DetectionCheckpointer


class _AtomicFile:
    """A write-mode file that lands at ``path`` (by rename) only when closed without error."""

    def __init__(self, path: str, mode: str):
        self._path = path
        fd, self._tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=os.path.dirname(path) or "."
        )
        self._f = os.fdopen(fd, mode)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def close(self):
        if self._f.closed:
            return
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self._path)

    def discard(self):
        self._f.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.discard()
        return False


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
        local = "://" not in str(path)
        if local and any(m in mode for m in "wx") and "+" not in mode:
            return _AtomicFile(str(path), mode)
        return self._base.open(path, mode, *args, **kwargs)


def make_atomic(checkpointer):
    """Make a (fvcore/Detectron2) checkpointer write atomically; returns it for chaining."""
    if not isinstance(checkpointer.path_manager, AtomicPathManager):
        checkpointer.path_manager = AtomicPathManager(checkpointer.path_manager)
    return checkpointer


class UntaggedCheckpointer(DetectionCheckpointer):
    """A checkpointer whose saves do not move ``last_checkpoint`` (used for ``model_best``).

    Detectron2's ``BestCheckpointer`` saves through the checkpointer it is given; with the
    trainer's, ``last_checkpoint`` would then name ``model_best.pth`` and a later ``--resume``
    would restart from the best (older) iteration instead of the latest.
    """

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        return None
