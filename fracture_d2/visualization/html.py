"""``index.html``: every picture of a visualization run, linked, with the metrics tables.

One self-contained file (inline CSS, no scripts, relative links), so the folder can be copied
anywhere and opened offline.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from fracture_d2.utils_io import atomic_open


@dataclass
class Picture:
    """A picture file (path relative to the index) with a short caption."""

    path: str
    caption: str = ""


@dataclass
class Section:
    """A titled group of pictures; ``wide`` pictures take the full page width."""

    title: str
    pictures: list[Picture] = field(default_factory=list)
    note: str = ""
    wide: bool = False


@dataclass
class Table:
    """A titled table: header cells and rows of cells (numbers are formatted)."""

    title: str
    header: list[str]
    rows: list[list]


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1500px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 1.5em 1em 0;display:inline-table;vertical-align:top}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:.9em}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
caption{font-weight:600;text-align:left;padding:2px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
.wide{grid-template-columns:1fr}
figure{margin:0;border:1px solid #ddd;padding:6px;background:#fafafa}
figure img{width:100%;height:auto}figcaption{font-size:.85em;color:#444}
.note{color:#555;font-size:.92em}dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}
dt{font-weight:600}dd{margin:0;font-family:monospace;font-size:.9em;word-break:break-all}
"""


def fmt(v) -> str:
    """Table cell text: floats with 3 decimals (or 1 when >= 10, like AP), lists as ranges."""
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
    if isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return f"{fmt(v[0])}-{fmt(v[1])}"
    return str(v)


def _table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>" for row in t.rows
    )
    return f"<table><caption>{html.escape(t.title)}</caption><tr>{head}</tr>{body}</table>"


def _section(s: Section) -> str:
    figs = "".join(
        f'<figure><a href="{quote(p.path)}"><img src="{quote(p.path)}" loading="lazy" '
        f'alt="{html.escape(p.caption)}"></a><figcaption><a href="{quote(p.path)}">'
        f"{html.escape(p.caption or p.path)}</a></figcaption></figure>"
        for p in s.pictures
    )
    note = f'<p class="note">{html.escape(s.note)}</p>' if s.note else ""
    cls = "grid wide" if s.wide else "grid"
    return f"<h2>{html.escape(s.title)}</h2>{note}<div class='{cls}'>{figs}</div>"


def write_index(
    out_dir,
    title: str,
    info: list[tuple[str, str]],
    tables: list[Table],
    sections: list[Section],
    notes: list[str] = (),
) -> Path:
    """Write ``out_dir/index.html`` atomically and return its path."""
    out = Path(out_dir) / "index.html"
    facts = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in info)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><dl>{facts}</dl>",
    ]
    if tables:
        parts.append("<h2>Metrics</h2>" + "".join(_table(t) for t in tables))
    parts += [_section(s) for s in sections if s.pictures or s.note]
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f"<h2>Notes</h2><ul class='note'>{items}</ul>")
    parts.append("</body></html>\n")
    with atomic_open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return out


def evaluation_tables(m: dict) -> list[Table]:
    """Tables from ``tools/evaluate.py``'s ``metrics.json``; absent sections give no table."""
    tables = []
    coco = m.get("coco") or {}
    cols = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    rows = [["overall"] + [coco["overall"].get(c) for c in cols]] if coco.get("overall") else []
    rows += [
        [p] + [v.get(c) for c in cols] for p, v in sorted((coco.get("per_body_part") or {}).items())
    ]
    if rows:
        tables.append(Table("COCO box AP (%)", ["images"] + cols, rows))
    froc = m.get("froc") or {}
    if froc.get("fp_per_image"):
        rows = [
            [fmt(float(x)), s]
            for x, s in zip(froc["fp_per_image"], froc["sensitivity"], strict=True)
        ]
        if froc.get("score") is not None:
            rows.append(["FROC score", froc["score"]])
        if froc.get("ci95"):
            rows.append(["95% CI", froc["ci95"]])
        tables.append(Table("FROC: sensitivity at FP per image", ["FP/image", "sensitivity"], rows))
    img = m.get("image_level") or {}
    if img:
        rows = [["AUROC", img.get("auroc")], ["95% CI", img.get("ci95")]]
        for key in ("at_threshold", "youden"):
            for k, v in (img.get(key) or {}).items():
                rows.append([f"{key}: {k}", v])
        tables.append(
            Table(f"Image level (score: {img.get('method', 'max')})", ["metric", "value"], rows)
        )
    study = m.get("study_level") or {}
    if study:
        ci = study.get("ci95") or {}
        rows = [
            ["kappa", study.get("kappa"), ci.get("kappa") if isinstance(ci, dict) else None],
            ["AUROC", study.get("auroc"), ci.get("auroc") if isinstance(ci, dict) else None],
        ]
        tables.append(
            Table(
                f"Study level (score: {study.get('method', 'max')})",
                ["metric", "value", "95% CI"],
                rows,
            )
        )
    per_part = _per_body_part(m)
    if per_part:
        tables.append(per_part)
    return tables


def _per_body_part(m: dict) -> Table | None:
    """One row per body part: box AP50, FROC score, image AUROC, study kappa/AUROC, studies."""
    sources = {
        "AP50": ((m.get("coco") or {}).get("per_body_part"), "AP50"),
        "FROC score": ((m.get("froc") or {}).get("per_body_part"), "score"),
        "image AUROC": ((m.get("image_level") or {}).get("per_body_part"), "auroc"),
        "study kappa": ((m.get("study_level") or {}).get("per_body_part"), "kappa"),
        "study AUROC": ((m.get("study_level") or {}).get("per_body_part"), "auroc"),
        "studies": ((m.get("study_level") or {}).get("per_body_part"), "n_studies"),
    }
    sources = {k: v for k, v in sources.items() if v[0]}
    parts = sorted({p for table, _ in sources.values() for p in table})
    if not parts:
        return None
    rows = [[p] + [(t.get(p) or {}).get(key) for t, key in sources.values()] for p in parts]
    return Table("Per body part", ["body part", *sources], rows)
