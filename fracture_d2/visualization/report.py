"""One visualization run: choose images, draw panels, grids, heatmaps and curves, write the
index. ``tools/visualize.py`` parses the command line and calls :func:`visualize`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from itertools import chain, zip_longest
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fracture_d2.data.errors import DataError
from fracture_d2.data.images import load_image
from fracture_d2.evaluation import match_detections
from fracture_d2.utils_io import read_training_metrics

from . import selection as sel
from .curves import plot_evaluation, plot_training
from .html import Picture, Section, Table, evaluation_tables, write_index
from .panels import render_grid, render_heatmap, render_panel
from .summary import threshold_table, training_table, write_selection

logger = logging.getLogger("fracture_d2")


@dataclass
class VisualizeOptions:
    """What to draw; mirrors ``tools/visualize.py``'s options (see its ``--help``)."""

    dataset: str | None = None
    predictions: str | None = None
    train_metrics: str | None = None
    eval_metrics: str | None = None  # tools/evaluate.py's metrics.json (or its folder)
    threshold: float = 0.5
    iou: float = 0.5
    layout: str = "side"
    ids: list[int] = field(default_factory=list)
    body_parts: list[str] = field(default_factory=list)
    selections: list[str] = field(default_factory=lambda: ["worst-fp", "missed", "sample"])
    max_images: int = 12
    grid_max: int = 48
    seed: int = 0
    heatmaps: int = 6
    cam_layer: str = "res3"
    cam_method: str = "hirescam"
    info: list[tuple[str, str]] = field(default_factory=list)  # extra facts for the index


def load_results(o: VisualizeOptions) -> tuple[list[sel.ImageResult], list[str]]:
    """Images with ground truth and/or predictions, matched at the threshold; and notes."""
    notes, by_image, images = [], None, None
    if o.predictions:
        by_image, images = sel.load_predictions(o.predictions)
    if o.dataset:
        results = sel.dataset_results(o.dataset)
        if by_image is not None:
            if images is not None:
                raise DataError(
                    o.predictions,
                    "tools/predict.py output has its own image ids; " "use it without --dataset",
                )
            unknown = sel.attach_predictions(results, by_image)
            if by_image and unknown == len(by_image):
                raise DataError(
                    o.predictions,
                    f"no predicted image id is in dataset {o.dataset}; "
                    "were they made on another dataset?",
                )
            if unknown:
                notes.append(f"{unknown} predicted image ids are not in {o.dataset}; ignored")
    elif images is not None:
        results = sel.predict_output_results(images, by_image)
    elif o.predictions:
        raise DataError(o.predictions, "a COCO results list has no file names; add --dataset")
    else:
        return [], notes
    if o.body_parts:
        known = sorted({r.body_part for r in results})
        bad = [p for p in o.body_parts if p not in known]
        if bad:
            raise ValueError(f"body part(s) {bad} not in the data; known: {known}")
        results = [r for r in results if r.body_part in o.body_parts]
    for r in results:
        r.match(o.threshold, o.iou)
    return results, notes


def choose_sections(results, o: VisualizeOptions, has_predictions: bool) -> dict[str, list]:
    """Selection name -> images, in display order."""
    if o.ids:
        by_id = {r.image_id: r for r in results}
        missing = [i for i in o.ids if i not in by_id]
        if missing:
            where = f"body part(s) {o.body_parts} of " if o.body_parts else ""
            raise ValueError(f"image id(s) {missing} not in {where}{o.dataset or o.predictions}")
        return {"chosen": [by_id[i] for i in o.ids]}
    needs_pred = {"worst-fp", "missed", "tp"}
    wanted = [s for s in o.selections if has_predictions or s not in needs_pred] or ["sample"]
    return {s: sel.select(results, s, o.max_images, o.seed) for s in wanted}


class _Images:
    """Reads each image once; unreadable ones are noted and skipped."""

    def __init__(self, notes: list[str]):
        self.cache, self.notes = {}, notes

    def get(self, r: sel.ImageResult):
        if r.image_id not in self.cache:
            try:
                self.cache[r.image_id] = load_image(r.file_name)
            except DataError as e:
                self.cache[r.image_id] = None
                self.notes.append(f"skipped image {r.image_id}: {e}")
                logger.warning(f"skipped image {r.image_id}: {e}")
        return self.cache[r.image_id]


def _heatmap_section(sections, images, predictor, o, out: Path) -> Section:
    from .gradcam import CAM_NAMES, explain

    # Alternate between selections so both hits and false alarms get explained.
    order = list(dict.fromkeys(r for r in chain(*zip_longest(*sections.values())) if r))
    section = Section(
        "Heatmaps: gradient CAM and RPN objectness",
        note=(
            "Left: the model's detections (the explained one solid, ground truth dashed). Middle: "
            f"{CAM_NAMES[o.cam_method]} of the explained box's score on {o.cam_layer}. Right: RPN "
            "objectness."
        ),
    )
    with tqdm(total=o.heatmaps, desc="heatmaps", unit="img") as bar:
        for r in order:
            if len(section.pictures) >= o.heatmaps:
                break
            gray = images.get(r)
            if gray is None:
                continue
            expl = explain(predictor, gray, 0, o.cam_layer, o.cam_method)
            if not len(expl.boxes):
                continue
            status = "pred"
            if r.judged:
                is_tp, _ = match_detections(r.gt, expl.boxes, expl.scores, "iou", o.iou)
                status = "tp" if is_tp[0] else "fp"
            path = render_heatmap(r, gray, expl, out / "heatmaps" / f"img_{r.image_id}.png", status)
            section.pictures.append(Picture(str(path.relative_to(out)), f"image {r.image_id}"))
            bar.update()
    return section


def _image_pictures(results, o: VisualizeOptions, images, out: Path, predictor):
    """Panels, grid sheets and heatmaps; returns the index sections and the threshold table."""
    sections = choose_sections(results, o, o.predictions is not None)
    panels = {}
    for r in tqdm(list(dict.fromkeys(chain(*sections.values()))), desc="panels", unit="img"):
        gray = images.get(r)
        if gray is not None:
            path = out / "panels" / f"img_{r.image_id}.png"
            render_panel(r, gray, path, o.layout, o.threshold)
            panels[r.image_id] = str(path.relative_to(out))
    shown = []
    for name, rs in sections.items():
        pics = [
            Picture(panels[r.image_id], f"image {r.image_id} · {r.body_part}")
            for r in rs
            if r.image_id in panels  # unreadable images are listed in the notes
        ]
        note = "" if rs else "no image fits this selection"
        shown.append(Section(sel.SELECTION_TITLES[name], pics, note))
    grids = Section("Grid sheets", wide=True)
    by_id = sorted(results, key=lambda r: r.image_id)
    # Evenly spaced by id: ids follow the split's folder order, so every body part shows up.
    spread = np.unique(np.linspace(0, len(by_id) - 1, min(o.grid_max, len(by_id))).round())
    sheets = {"all": [by_id[int(i)] for i in spread], **{k: v for k, v in sections.items() if v}}
    for name, rs in tqdm(sheets.items(), desc="grids", unit="sheet"):
        items = [(r, images.get(r)) for r in rs if images.get(r) is not None]
        title = sel.SELECTION_TITLES.get(name, name)
        if name == "all" and len(results) > len(rs):
            title += f" ({len(rs)} of {len(results)}, evenly spaced by id; --grid-max)"
        if items:
            path = render_grid(items, out / "grids" / f"grid_{name}.png", title)
            grids.pictures.append(Picture(str(path.relative_to(out)), title))
    shown.append(grids)
    write_selection(out / "selection.json", sections, panels, results, o.threshold, o.iou)
    if predictor is not None and o.heatmaps > 0:
        shown.append(_heatmap_section(sections, images, predictor, o, out))
    judged = o.predictions is not None and o.dataset
    return shown, [threshold_table(results, o.threshold, o.iou)] if judged else []


def _curves(o: VisualizeOptions, out: Path, notes: list) -> tuple[Section, list[Table]]:
    """Evaluation and training curves with their tables."""
    curves, tables = Section("Curves"), []
    if o.eval_metrics:
        path = Path(o.eval_metrics)
        path = path / "metrics.json" if path.is_dir() else path
        metrics = json.loads(path.read_text())
        tables += evaluation_tables(metrics)
        made = plot_evaluation(metrics, out / "curves")
        curves.pictures += [Picture(str(p.relative_to(out)), t) for t, p in made]
        notes += [f"evaluation: {n}" for n in metrics.get("notes", []) if isinstance(n, str)]
        if (path.parent / "report.md").is_file():
            notes.append(f"evaluation report: {(path.parent / 'report.md').resolve()}")
    if o.train_metrics:
        records = read_training_metrics(o.train_metrics)
        made = plot_training(records, out / "curves")
        curves.pictures += [Picture(str(p.relative_to(out)), t) for t, p in made]
        tables += [t for t in [training_table(records)] if t is not None]
    return curves, tables


def visualize(out_dir, o: VisualizeOptions, predictor=None) -> Path:
    """Write every picture under ``out_dir`` and ``out_dir/index.html``; returns the index.

    Args:
        out_dir: output folder (created; files are replaced one by one, atomically).
        o: what to draw.
        predictor: a :class:`~fracture_d2.inference.predictor.BatchPredictor` for heatmaps.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results, notes = load_results(o)
    sections, tables = [], []
    if results:
        sections, tables = _image_pictures(results, o, _Images(notes), out, predictor)
    curves, curve_tables = _curves(o, out, notes)
    if o.predictions and o.dataset and not o.eval_metrics:
        notes.append("PR, FROC and ROC curves come from tools/evaluate.py: pass --eval-dir DIR")
    info = [
        ("dataset", o.dataset or "-"),
        ("predictions", o.predictions or "-"),
        ("score threshold", f"{o.threshold:g}"),
        ("IoU threshold", f"{o.iou:g}"),
        *o.info,
    ]
    title = "fracture_d2 visualizations"
    return write_index(out, title, info, curve_tables + tables, [curves, *sections], notes)
