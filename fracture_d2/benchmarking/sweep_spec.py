"""A sweep file: configs (each with ``KEY VALUE`` overrides) x seeds x folds, checked whole
before anything runs or is written.

Example (``sweeps/synthetic_protocol.yaml``)::

    name: synthetic_protocol
    output_dir: output/sweeps/synthetic_protocol   # runs: <output_dir>/<config>/fold<f>_seed<s>
    seeds: [0, 1, 2]
    folds: {dataset: mura_synthetic, k: 3}         # trains on mura_synthetic_fold<f>_train
    test_datasets: [mura_synthetic_test_all]        # "{fold}" is replaced; default: fold's val
    overrides: {MODEL.DEVICE: cpu}                  # for every config
    configs:
      - name: faster_rcnn
        config_file: configs/quick_schedules/faster_rcnn_R_18_FPN_protocol.yaml
        overrides: {SOLVER.MAX_ITER: 60}

Every config is merged with its overrides (unknown keys and missing files are errors naming
the sweep file and the entry), and every dataset a run uses must be prepared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..data.errors import DataError
from ..data.folds import dataset_json
from .provenance import REPO

TOP_KEYS = {"name", "output_dir", "seeds", "folds", "test_datasets", "overrides", "configs"}
CONFIG_KEYS = {"name", "config_file", "overrides"}


class SweepError(DataError):
    """Bad sweep file; ``str(err)`` is ``SWEEP.yaml: entry: what is wrong``."""


@dataclass
class RunSpec:
    """One training run of a sweep: everything ``tools/train_net.py`` is given."""

    sweep: str
    config: str  # the sweep's name for the config entry
    config_file: str
    opts: list  # KEY VALUE ... (config overrides, then SEED, OUTPUT_DIR, DATASETS)
    seed: int
    fold: int | None
    output_dir: str
    test_datasets: list = field(default_factory=list)
    tta: bool = False

    @property
    def label(self) -> str:
        return (
            f"{self.config} "
            + (f"fold {self.fold} " if self.fold is not None else "")
            + (f"seed {self.seed}")
        )


def _opts(overrides, where) -> list[str]:
    """``{KEY: VALUE}`` or ``[KEY, VALUE, ...]`` as command-line strings."""
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    elif isinstance(overrides, list) and len(overrides) % 2 == 0:
        pairs = list(zip(overrides[::2], overrides[1::2], strict=True))
    else:
        raise ValueError(f"{where}: overrides must be a mapping or a list of KEY VALUE pairs")
    out = []
    for k, v in pairs:
        out += [str(k), str(tuple(v)) if isinstance(v, list | tuple) else str(v)]
    return out


def _config_file(path, sweep_file: Path) -> Path:
    """A config path as given (relative to the working directory), else relative to the
    repository or to the sweep file."""
    for base in (Path.cwd(), REPO, sweep_file.parent):
        p = base / path
        if p.is_file():
            return p.resolve()
    raise ValueError(f"config file {path} not found")


def _merged(config_file: Path, opts: list):
    """The config with overrides, as train_net.py will build it (raises on unknown keys)."""
    from fracture_d2.config import get_fracture_cfg

    cfg = get_fracture_cfg()
    try:
        cfg.merge_from_file(str(config_file))
        cfg.merge_from_list(opts)
    except (KeyError, AssertionError, ValueError, TypeError) as e:
        msg = str(e.args[0] if e.args else e)
        # yacs: KeyError "Non-existent config key: X" (files), AssertionError (overrides)
        what = "unknown config key" if "Non-existent" in msg else "bad override"
        raise ValueError(f"{what} ({msg})") from None
    return cfg


def _read(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SweepError(path, f"cannot read the sweep file ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise SweepError(
            path, f"is not valid YAML ({getattr(e, 'problem', e)})", mark.line + 1 if mark else None
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("configs"), list) or not doc["configs"]:
        raise SweepError(path, "must be a mapping with a non-empty 'configs' list")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise SweepError(path, f"unknown keys {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    return doc


def _folds(doc, path) -> tuple[str | None, list]:
    folds = doc.get("folds")
    if folds is None:
        return None, [None]
    if not isinstance(folds, dict) or "dataset" not in folds or "k" not in folds:
        raise SweepError(path, "folds: needs 'dataset' and 'k' (and optionally 'use')")
    use = folds.get("use", list(range(int(folds["k"]))))
    return str(folds["dataset"]), [int(f) for f in use]


def _entries(doc, path) -> list[tuple[str, Path, list]]:
    """``(name, config file, overrides)`` of each config entry, checked."""
    common = _opts(doc.get("overrides"), "overrides")
    out, names = [], set()
    for i, c in enumerate(doc["configs"]):
        where = f"configs[{i}]"
        if not isinstance(c, dict) or "config_file" not in c or set(c) - CONFIG_KEYS:
            raise SweepError(path, f"{where}: needs 'config_file' (keys: {sorted(CONFIG_KEYS)})")
        name = str(c.get("name") or Path(c["config_file"]).stem)
        where = f"{where} ({name})"
        if not re.fullmatch(r"[\w.+-]+", name) or name in names:
            raise SweepError(path, f"{where}: names must be unique and [A-Za-z0-9_.+-]")
        names.add(name)
        try:
            out.append(
                (
                    name,
                    _config_file(c["config_file"], path),
                    common + _opts(c.get("overrides"), where),
                )
            )
        except ValueError as e:
            raise SweepError(path, f"{where}: {e}") from None
    return out


def _dataset_opts(fold_ds, fold, tests) -> list[str]:
    """DATASETS.TRAIN/TEST (and the validation-loss set) of one fold of the sweep."""
    test = [t.format(fold=fold, dataset=fold_ds) for t in tests] if tests else None
    opts = []
    if fold is not None:
        test = test or [f"{fold_ds}_fold{fold}_val"]
        opts += ["DATASETS.TRAIN", str((f"{fold_ds}_fold{fold}_train",))]
        opts += ["FRACTURE.VAL_DATASET", f"{fold_ds}_fold{fold}_val"]
    return opts + (["DATASETS.TEST", str(tuple(test))] if test else [])


def _check_datasets(needed: dict, path) -> None:
    for dataset, where in sorted(needed.items()):
        try:
            dataset_json(dataset)
        except DataError as e:
            hint = " (run datasets/make_folds.py)" if "_fold" in dataset else ""
            msg = f"{where}: dataset {dataset} is not prepared{hint}: {e}"
            raise SweepError(path, msg) from None


def load_sweep(path, output_dir=None) -> tuple[dict, list[RunSpec]]:
    """Read and check a sweep file; nothing is written.

    Args:
        output_dir: replaces the file's ``output_dir``.

    Returns:
        ``(header, runs)``: name, output_dir, seeds, folds; one :class:`RunSpec` per config x
        fold x seed.

    Raises:
        SweepError: one line naming the sweep file and the entry (bad YAML, unknown keys,
            missing config files, unknown config keys, unprepared datasets).
    """
    from fracture_d2.engine.tta import check_tta

    path = Path(path)
    doc = _read(path)
    name = str(doc.get("name") or path.stem)
    out_root = Path(output_dir or doc.get("output_dir") or f"output/sweeps/{name}").resolve()
    seeds = doc.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise SweepError(path, "seeds: must be a list of integers >= 0")
    fold_ds, folds = _folds(doc, path)
    needed, runs = {}, []
    for config, config_file, opts in _entries(doc, path):
        for fold in folds:
            where = f"configs ({config})" + (f" fold {fold}" if fold is not None else "")
            opts_f = opts + _dataset_opts(fold_ds, fold, doc.get("test_datasets"))
            try:
                cfg = _merged(config_file, opts_f)
                check_tta(cfg)
            except ValueError as e:
                raise SweepError(path, f"{where}: {e}") from None
            for d in [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]:
                needed.setdefault(d, where)  # the first entry that needs it
            for seed in seeds:
                sub = f"fold{fold}_seed{seed}" if fold is not None else f"seed{seed}"
                out = out_root / config / sub
                full = opts_f + ["SEED", str(seed), "OUTPUT_DIR", str(out)]
                tests, tta = list(cfg.DATASETS.TEST), bool(cfg.TEST.AUG.ENABLED)
                spec = (name, config, str(config_file), full, seed, fold, str(out), tests, tta)
                runs.append(RunSpec(*spec))
    _check_datasets(needed, path)
    header = {"name": name, "output_dir": str(out_root), "seeds": seeds, "folds": folds}
    header.update(fold_dataset=fold_ds, file=str(path.resolve()))
    return header, runs
