"""One prediction run over many files: read (in worker processes), detect in batches, write an
overlay per image and one JSON; unreadable files are skipped, listed and counted by reason.
``tools/predict.py`` parses the command line and calls :func:`predict_files`."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from fracture_d2.data.errors import DataError
from fracture_d2.data.images import load_image
from fracture_d2.utils_io import write_json_atomic

from .loading import InputList, Skipped
from .predictor import BatchPredictor
from .results import categories, draw_prediction, image_prediction

FORMAT = "fracture_d2.predictions/1"


class _Files(torch.utils.data.Dataset):
    """Reads one file per item; a failure comes back as its message instead of an image."""

    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        try:
            return i, load_image(self.files[i]), None
        except DataError as e:
            return i, None, e.reason
        except Exception as e:  # a decoder bug must not end a long run: skip, say why
            return i, None, f"{type(e).__name__}: {e}"


def overlay_names(files: list[Path]) -> list[Path]:
    """Overlay names mirroring the inputs' folders below their common folder: ``a/b.png`` for
    ``a/b.png``, ``a/c.dcm.png`` for ``a/c.dcm`` (so ``c.png`` and ``c.dcm`` stay apart)."""
    resolved = [f.resolve() for f in files]
    common = Path(os.path.commonpath([p.parent for p in resolved])) if resolved else Path()
    names, used = [], set()
    for p in resolved:
        rel = p.relative_to(common)
        name = rel if rel.suffix.lower() == ".png" else rel.with_name(rel.name + ".png")
        while name in used:  # only for odd names such as x.png next to x.png.png
            name = name.with_name("_" + name.name)
        used.add(name)
        names.append(name)
    return names


@dataclass
class PredictionRun:
    """What a run produced: the JSON path, image count and skipped inputs."""

    json_path: Path
    n_images: int
    skipped: list[Skipped] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)

    def reasons(self) -> Counter:
        """Skipped inputs counted by reason (its first clause, without details)."""
        return Counter(s.reason.split(";")[0].split(" (")[0].split(":")[0] for s in self.skipped)


def predict_files(
    inputs: InputList,
    predictor: BatchPredictor,
    out_dir,
    threshold: float = 0.5,
    batch_size: int = 4,
    num_workers: int = 2,
    score_method: str = "max",
    overlays: bool = True,
    info: dict | None = None,
) -> PredictionRun:
    """Detect fractures in every input file; write ``out_dir/predictions.json`` + overlays.

    The JSON holds COCO ``results`` (boxes scoring ``>= threshold``; ``bbox`` x, y, w, h) and
    ``images`` with an image-level ``score`` from *all* the model's boxes (before the
    threshold, so it stays a continuous score for ROC analysis) and ``positive`` (``score >=
    threshold``); ``skipped`` lists the files that could not be read.
    """
    from fracture_d2.visualization.panels import save_rgb

    out = Path(out_dir)
    files, skipped = list(inputs.files), list(inputs.skipped)
    names = overlay_names(files)
    loader = torch.utils.data.DataLoader(
        _Files(files),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=list,
    )
    images, results = [], []
    bar = tqdm(total=len(files), desc="predict", unit="img")
    for batch in loader:
        ok = [(i, g) for i, g, err in batch if err is None]
        skipped += [Skipped(str(files[i]), err) for i, _, err in batch if err is not None]
        for (i, gray), o in zip(ok, predictor.run([g for _, g in ok]), strict=True):
            pred = image_prediction(
                o["instances"],
                i + 1,
                files[i],
                gray.shape,
                threshold,
                score_method,
                o["head_score"],
            )
            if overlays:
                save_rgb(draw_prediction(gray, pred, score_method), out / "overlays" / names[i])
                pred.entry["overlay"] = str(Path("overlays") / names[i])
            images.append(pred.entry)
            results += pred.results
        bar.update(len(batch))
        bar.set_postfix(skipped=len(skipped) - len(inputs.skipped))
    bar.close()
    doc = {
        "format": FORMAT,
        "info": {**(info or {}), "threshold": threshold, "image_score": score_method},
        "categories": categories(predictor.cfg),
        "images": images,
        "results": results,
        "skipped": [{"file": s.file, "reason": s.reason} for s in skipped],
    }
    path = out / "predictions.json"
    write_json_atomic(path, doc, indent=1)
    return PredictionRun(path, len(images), skipped, inputs.ignored)
