"""Image- and study-level metrics: is there a fracture in this image / this study?

Image score: the highest box score (or noisy-OR) of the image's predictions, 0 without any
(:func:`.scores.image_score`); study score: max or mean of its images' scores
(:func:`.scores.study_score`). Every image of the dataset counts, annotated or not. Reported:
AUROC and ROC, sensitivity/specificity/PPV/NPV/F1 at a chosen threshold and at the
Youden-optimal one, and for studies Cohen's kappa (MURA's official metric); 95% CIs by the
patient bootstrap. Undefined values are left out with a note, never NaN.
"""

from __future__ import annotations

import numpy as np

from .bootstrap import Bootstrap, ci95
from .classification import (
    RATE_NAMES,
    auroc,
    cohen_kappa,
    confusion_by_unit,
    rates,
    roc_curve,
    youden_threshold,
)
from .inputs import EvaluationError
from .scores import HEAD_METHODS, image_score, study_score

# MURA paper (Rajpurkar et al. 2017), Cohen's kappa on MURA valid, overall.
MURA_REFERENCE_KAPPA = {"MURA DenseNet-169": 0.705, "best radiologist": 0.778}


def image_scores(gt, preds, method: str = "max") -> np.ndarray:
    """``(I,)`` score of every image of ``gt`` from its predictions' scores (and, for the head
    methods, the image-level head's probabilities ``preds.head``)."""
    order = np.argsort(preds.image, kind="stable")
    bounds = np.searchsorted(preds.image[order], np.arange(len(gt) + 1))
    s = preds.score[order]
    head = preds.head if preds.head is not None else np.full(len(gt), np.nan)
    if method in HEAD_METHODS and np.isnan(head).any():
        missing = gt.image_ids[np.isnan(head)]
        raise EvaluationError(
            preds.source,
            f"image score {method!r} needs the image-level head's score of every image; "
            f"{len(missing)} have none (first: image id {missing[0]})",
        )
    return np.array(
        [
            image_score(s[a:b], method, h)
            for a, b, h in zip(bounds[:-1], bounds[1:], head, strict=True)
        ]
    )


def _at_threshold(counts_u, threshold, boot, what, notes) -> dict:
    counts = counts_u.sum(0)
    point = rates(counts)
    out = {"threshold": float(threshold)}
    out.update({k: int(v) for k, v in zip(("tp", "fp", "tn", "fn"), counts, strict=True)})
    undefined = [k for k in RATE_NAMES if np.isnan(point[k])]
    out.update({k: float(point[k]) for k in RATE_NAMES if k not in undefined})
    if undefined:
        notes.append(
            f"{what} at threshold {threshold:g}: {', '.join(undefined)} undefined "
            "(zero denominator); left out"
        )
    if boot is not None and boot.n_resamples:
        b = rates(boot.weights @ counts_u)
        cis = {k: ci95(b[k], what, notes) for k in RATE_NAMES if k not in undefined}
        out["ci95"] = {k: v for k, v in cis.items() if v is not None}
    return out


def binary_metrics(
    y,
    s,
    unit,
    boot: Bootstrap,
    threshold: float,
    what: str,
    notes,
    kappa: bool = False,
    full: bool = True,
) -> dict:
    """AUROC (+CI), kappa (+CI) and if ``full`` ROC, metrics at ``threshold`` (+CI) and at
    Youden's threshold."""
    y, s, unit = np.asarray(y, bool), np.asarray(s, np.float64), np.asarray(unit)
    fpr, tpr, thr = roc_curve(y, s)
    out = {"n": int(len(y)), "n_positive": int(y.sum()), "auroc": float(auroc(y, s)[0])}
    counts_u = confusion_by_unit(y, s, threshold, unit, boot.n_units)
    if kappa:
        k = cohen_kappa(counts_u.sum(0))
        if np.isnan(k):
            notes.skipped("kappa", what, "constant predictions and labels")
        else:
            out["kappa"] = float(k)
    if boot.n_resamples:
        w = boot.weights[:, unit] if len(unit) else np.zeros((boot.n_resamples, 0))
        out["ci95"] = {"auroc": ci95(auroc(y, s, w), what, notes)}
        if "kappa" in out:
            out["ci95"]["kappa"] = ci95(cohen_kappa(boot.weights @ counts_u), what, notes)
        out["ci95"] = {k: v for k, v in out["ci95"].items() if v is not None}
    if not full:
        return out
    out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}
    out["at_threshold"] = _at_threshold(counts_u, threshold, boot, what, notes)
    t = youden_threshold(y, s)
    out["youden"] = _at_threshold(
        confusion_by_unit(y, s, t, unit, boot.n_units), t, None, f"{what} (Youden)", notes
    )
    return out


def _two_classes(y, section, notes, part=None) -> bool:
    if len(y) and 0 < int(np.sum(y)) < len(y):
        return True
    kind = "positive" if np.all(y) else "negative"
    why = "none labelled" if len(y) == 0 else f"all {len(y)} {kind}"
    if part is None:
        notes.append(f"{section} skipped: {why} (AUROC and kappa need both classes)")
    else:
        notes.skipped(f"{section} (AUROC and kappa need both classes)", part, why)
    return False


def image_metrics(gt, scores, parts, boot, method, threshold, notes) -> dict | None:
    """The image-level section (overall + per body part AUROC)."""
    lab = gt.image_label >= 0
    if not lab.all():
        notes.append(f"image level: {int((~lab).sum())} images without a label left out")
    y, s, unit = gt.image_label[lab] == 1, scores[lab], boot.unit_of_image[lab]
    if not _two_classes(y, "image level", notes):
        return None
    out = {"method": method, **binary_metrics(y, s, unit, boot, threshold, "image", notes)}
    out["n_images"] = out.pop("n")
    out["ci95"] = out["ci95"].get("auroc") if "ci95" in out else None
    out["per_body_part"] = {}
    for part, mask in parts.items():
        m = mask[lab]
        if not _two_classes(y[m], "image level", notes, part):
            continue
        r = {
            "auroc": float(auroc(y[m], s[m])[0]),
            "n_images": int(m.sum()),
            "n_positive": int(y[m].sum()),
        }
        if boot.n_resamples:
            ci = ci95(auroc(y[m], s[m], boot.weights[:, unit[m]]), f"image {part}", notes)
            if ci:
                r["ci95"] = ci
        out["per_body_part"][part] = r
    if out["ci95"] is None:
        del out["ci95"]
    return out


def study_table(gt, scores, method: str, unit_of_image) -> dict:
    """One row per study: id, label, score, unit (patient), body part, image count.

    Raises:
        EvaluationError: a study whose images disagree on study label, patient or body part.
    """
    ids, inv = np.unique(gt.study.astype(str), return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(ids) + 1))
    label_src = gt.study_label if gt.study_label is not None else gt.image_label
    cols = {"label": label_src, "unit": unit_of_image}
    if gt.patient is not None:
        cols["patient_id"] = gt.patient
    if gt.body_part is not None:
        cols["body_part"] = gt.body_part
    rows = {"study_id": ids, "score": np.empty(len(ids)), "n_images": np.diff(bounds)}
    rows.update({k: np.empty(len(ids), dtype=v.dtype) for k, v in cols.items()})
    for n, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        idx = order[a:b]
        rows["score"][n] = study_score(scores[idx], method)
        for k, v in cols.items():
            vals = v[idx]
            if gt.study_label is None and k == "label":  # derived: any positive image
                rows[k][n] = -1 if (vals < 0).any() else vals.max()
            elif (vals != vals[0]).any():
                raise EvaluationError(
                    gt.source,
                    f"study {ids[n]} mixes {k} values "
                    f"{sorted(set(vals.tolist()))}; fix the dataset",
                )
            else:
                rows[k][n] = vals[0]
    return rows


def study_metrics(gt, scores, boot, method, threshold, notes) -> tuple[dict | None, dict | None]:
    """The study-level section (MURA): kappa at ``threshold``, AUROC, per body part.

    Returns:
        ``(section, study_table)``; ``(None, None)`` without study ids.
    """
    if gt.study is None:
        notes.append(f"study level skipped: {gt.name} has no study_id (e.g. FracAtlas)")
        return None, None
    if gt.study_label is None:
        notes.append("no study_label: a study is positive if any of its images is")
    st = study_table(gt, scores, method, boot.unit_of_image)
    lab = st["label"] >= 0
    if not lab.all():
        notes.append(f"study level: {int((~lab).sum())} studies without a label left out")
    y, s, unit = st["label"][lab] == 1, st["score"][lab], st["unit"][lab]
    if not _two_classes(y, "study level", notes):
        return None, st
    out = {"method": method, "threshold": float(threshold)}
    out.update(binary_metrics(y, s, unit, boot, threshold, "study", notes, kappa=True))
    out["n_studies"] = out.pop("n")
    out["roc"].pop("thresholds")
    out["reference_kappa"] = MURA_REFERENCE_KAPPA
    out["per_body_part"] = {}
    parts = st.get("body_part")
    for part in sorted(set(parts[lab].tolist())) if parts is not None else []:
        m = parts[lab] == part
        if not _two_classes(y[m], "study level", notes, part):
            continue
        r = binary_metrics(
            y[m], s[m], unit[m], boot, threshold, f"study {part}", notes, kappa=True, full=False
        )
        out["per_body_part"][part] = {
            k: r[k] for k in ("kappa", "auroc", "ci95", "n_positive") if k in r
        } | {"n_studies": r["n"]}
    return out, st
