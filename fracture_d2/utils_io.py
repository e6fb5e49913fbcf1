"""Atomic file writing: outputs appear whole or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs):
    """Open a temp file beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj, indent: int | None = None) -> None:
    """Write ``obj`` as JSON atomically; the same object always gives the same bytes."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temp folder that replaces ``path`` as a whole if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_training_metrics(path) -> dict[int, dict]:
    """Detectron2's ``metrics.json`` (one JSON object per line) as iteration -> scalars.

    Records of one iteration are merged and later lines win, so a resumed run's re-logged
    iterations replace the old ones. An unfinished last line (training still running) is
    ignored; a broken line elsewhere is an error naming the line.
    """
    lines = Path(path).read_text().splitlines()
    merged: dict[int, dict] = {}
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if no == len(lines):
                break
            raise ValueError(f"{path}:{no}: not a JSON object ({e})") from e
        if "iteration" in rec:
            merged.setdefault(int(rec["iteration"]), {}).update(rec)
    return dict(sorted(merged.items()))


def sha256_file(path: str | os.PathLike, chunk: int = 2**20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (checkpoints are hundreds of MB)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
