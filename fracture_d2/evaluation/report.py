"""Write an evaluation: ``metrics.json``, ``metrics.csv`` (one row per number), ``report.md``
(Markdown tables), ``image_scores.csv`` and ``study_scores.csv``; each file atomically."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ..utils_io import atomic_open, write_json_atomic
from .inputs import EvaluationError

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RATE_KEYS = ("sensitivity", "specificity", "ppv", "npv", "f1")
CSV_FIELDS = ("section", "subset", "metric", "value", "ci95_low", "ci95_high", "n")


def clean(obj, where="metrics"):
    """Plain JSON types with floats rounded to 6 digits; raises on NaN/inf (never written)."""
    if isinstance(obj, dict):
        return {str(k): clean(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [clean(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        if not math.isfinite(obj):
            raise ValueError(f"{where} is {obj}; undefined values must be left out")
        return round(float(obj), 6)
    return obj


def csv_rows(m: dict) -> list[dict]:
    """Every reported number as a row ``section, subset, metric, value, ci95_low/high, n``."""
    rows = []

    def add(section, subset, metric, value, ci=None, n=None):
        lo, hi = ci if ci else ("", "")
        values = (section, subset, metric, value, lo, hi, n or "")
        rows.append(dict(zip(CSV_FIELDS, values, strict=True)))

    coco = m.get("coco", {})
    for subset, d in [("overall", coco.get("overall", {}))] + sorted(
        coco.get("per_body_part", {}).items()
    ):
        for k in COCO_KEYS:
            if k in d:
                add("coco", subset, k, d[k])
    froc = m.get("froc")
    if froc:
        for subset, d in [("overall", froc)] + sorted(froc["per_body_part"].items()):
            cis = d.get("sensitivity_ci95", [None] * len(d["fp_per_image"]))
            for f, s, ci in zip(d["fp_per_image"], d["sensitivity"], cis, strict=True):
                add("froc", subset, f"sensitivity@{f:g}fppi", s, ci, d["n_lesions"])
            add("froc", subset, "froc_score", d["score"], d.get("ci95"), d["n_lesions"])
    for section, n_key in (("image_level", "n_images"), ("study_level", "n_studies")):
        d = m.get(section)
        if not d:
            continue
        cis = d["ci95"] if isinstance(d.get("ci95"), dict) else {"auroc": d.get("ci95")}
        if "kappa" in d:
            add(section, "overall", f"kappa@{d['threshold']:g}", d["kappa"], cis.get("kappa"))
        add(section, "overall", "auroc", d["auroc"], cis.get("auroc"), d[n_key])
        for op in ("at_threshold", "youden"):
            t = d[op]
            for k in RATE_KEYS:
                if k in t:
                    ci = t.get("ci95", {}).get(k)
                    add(section, "overall", f"{k}@{op}({t['threshold']:.4g})", t[k], ci, d[n_key])
        for part, p in sorted(d.get("per_body_part", {}).items()):
            pci = p.get("ci95") if isinstance(p.get("ci95"), dict) else {"auroc": p.get("ci95")}
            if "kappa" in p:
                add(section, part, "kappa", p["kappa"], pci.get("kappa"), p[n_key])
            add(section, part, "auroc", p["auroc"], pci.get("auroc"), p[n_key])
    return rows


def _f(v, digits=3, ci=None):
    if v is None:
        return "-"
    text = f"{v:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def _table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows] + [""]


def markdown(m: dict) -> str:
    """A human-readable report: counts, then one table per section, then the notes."""
    c = m["counts"]
    lines = [f"# Evaluation of `{m['dataset']}`", "", f"Predictions: `{m['predictions']}`", ""]
    lines.append(
        f"{c['images']} images ({c['annotated_images']} with boxes annotated), "
        f"{c['lesions']} lesions, {c['predictions']} predictions"
        + (f", {c['studies']} studies" if "studies" in c else "")
        + (f", {c['patients']} patients" if "patients" in c else "")
        + f". 95% CIs: {m['bootstrap']['resamples']} bootstrap resamples over "
        f"{m['bootstrap']['unit']} (seed {m['bootstrap']['seed']})."
    )
    lines.append("")
    coco = m.get("coco")
    if coco:
        lines += ["## COCO box AP (annotated images)", ""]
        rows = [("overall", *(_f(coco["overall"].get(k), 1) for k in COCO_KEYS))]
        rows += [
            (p, *(_f(d.get(k), 1) for k in COCO_KEYS)) for p, d in coco["per_body_part"].items()
        ]
        lines += _table(("subset", *COCO_KEYS), rows)
    froc = m.get("froc")
    if froc:
        rule = (
            f"IoU >= {froc['iou_threshold']:g}"
            if froc["criterion"] == "iou"
            else "centre inside the box"
        )
        lines += [f"## FROC (lesion sensitivity at FPs per image; hit: {rule})", ""]
        head = ("subset", *(f"{f:g}" for f in froc["fp_per_image"]), "FROC score", "lesions")
        rows = [
            (
                "overall",
                *(_f(s) for s in froc["sensitivity"]),
                _f(froc["score"], ci=froc.get("ci95")),
                froc["n_lesions"],
            )
        ]
        rows += [
            (
                p,
                *(_f(s) for s in d["sensitivity"]),
                _f(d["score"], ci=d.get("ci95")),
                d["n_lesions"],
            )
            for p, d in froc["per_body_part"].items()
        ]
        lines += _table(head, rows)
    lines += _level_md(m.get("image_level"), "Image level", "n_images")
    lines += _level_md(m.get("study_level"), "Study level", "n_studies")
    if m.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in m["notes"]] + [""]
    return "\n".join(lines)


def _level_md(d: dict | None, title: str, n_key: str) -> list[str]:
    if not d:
        return []
    cis = d["ci95"] if isinstance(d.get("ci95"), dict) else {"auroc": d.get("ci95")}
    out = [f"## {title} (score: {d['method']})", ""]
    head = ("subset", n_key[2:], "positive", "AUROC")
    row = ["overall", d[n_key], d["n_positive"], _f(d["auroc"], ci=cis.get("auroc"))]
    studies = n_key == "n_studies"  # study level: kappa too
    if studies:
        head += (f"kappa @ {d['threshold']:g}",)
        row.append(_f(d.get("kappa"), ci=cis.get("kappa")))
    rows = [row]
    for part, p in d.get("per_body_part", {}).items():
        pci = p["ci95"] if isinstance(p.get("ci95"), dict) else {"auroc": p.get("ci95")}
        r = [part, p[n_key], p["n_positive"], _f(p["auroc"], ci=pci.get("auroc"))]
        if studies:
            r.append(_f(p.get("kappa"), ci=pci.get("kappa")))
        rows.append(r)
    out += _table(head, rows)
    ops = []
    for name, key in (("at threshold", "at_threshold"), ("Youden-optimal", "youden")):
        t = d[key]
        ci = t.get("ci95", {})
        ops.append(
            (name, f"{t['threshold']:.4g}", *(_f(t.get(k), ci=ci.get(k)) for k in RATE_KEYS))
        )
    out += _table(("operating point", "threshold", *RATE_KEYS), ops)
    if "reference_kappa" in d:
        ref = ", ".join(f"{k} {v}" for k, v in d["reference_kappa"].items())
        out += [f"MURA paper, kappa on MURA valid: {ref}.", ""]
    return out


def _write_table(path: Path, columns: dict) -> None:
    cols = {k: v for k, v in columns.items() if v is not None}
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for row in zip(*cols.values(), strict=True):
            w.writerow(round(float(v), 6) if isinstance(v, float | np.floating) else v for v in row)


def read_report(path) -> dict | None:
    """The evaluation report in ``path``; None for anything else (e.g. Detectron2's training
    ``metrics.json``, which holds one JSON object per line)."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and "dataset" in d and "counts" in d else None


def check_out_dir(out_dir) -> None:
    """Refuse an output folder whose ``metrics.json`` is something else (a training log)."""
    path = Path(out_dir) / "metrics.json"
    if path.exists() and read_report(path) is None:
        raise EvaluationError(
            path, "exists and is no evaluation report (a training log?); choose another --out"
        )


def write_report(metrics: dict, out_dir, tables: dict | None = None) -> dict:
    """Write the report files into ``out_dir``; returns ``{name: path}``."""
    check_out_dir(out_dir)
    out = Path(out_dir)
    m = clean(metrics)
    paths = {k: out / k for k in ("metrics.json", "metrics.csv", "report.md")}
    write_json_atomic(paths["metrics.json"], m, indent=1)
    with atomic_open(paths["metrics.csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(csv_rows(m))
    with atomic_open(paths["report.md"], "w", encoding="utf-8") as f:
        f.write(markdown(m))
    for name, file in (("images", "image_scores.csv"), ("studies", "study_scores.csv")):
        if tables and tables.get(name) is not None:
            paths[file] = out / file
            _write_table(paths[file], tables[name])
    return paths
