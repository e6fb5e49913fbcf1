"""Curves as PNG: training curves from Detectron2's ``metrics.json`` and the evaluation curves
(PR, FROC, image- and study-level ROC) from ``tools/evaluate.py``'s ``metrics.json``."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from .panels import save_figure


def _series(records: dict[int, dict], key: str):
    pts = [(it, r[key]) for it, r in records.items() if isinstance(r.get(key), int | float)]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_training(records: dict[int, dict], out_dir) -> list[tuple[str, Path]]:
    """Loss (+ validation loss) and learning-rate curves, and AP/AP50 over iterations."""
    out_dir, made = Path(out_dir), []
    keys = sorted({k for r in records.values() for k in r})
    losses = [k for k in keys if k == "total_loss" or k.startswith("loss_")]
    val = [k for k in keys if k.startswith("val/") and "loss" in k]
    if losses or val:
        fig = Figure(figsize=(9, 6.5))
        ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        for k in losses + val:
            x, y = _series(records, k)
            positive = [(a, b) for a, b in zip(x, y, strict=True) if b > 0]
            if positive:
                ax.plot(*zip(*positive, strict=True), "--" if k in val else "-", label=k, lw=1.3)
        ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, ncol=2)
        ax.set_title("training losses" + (" (dashed: validation set)" if val else ""))
        x, y = _series(records, "lr")
        ax_lr.plot(x, y, color="gray")
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("iteration")
        ax_lr.grid(alpha=0.3)
        fig.tight_layout()
        made.append(("Training losses", save_figure(fig, out_dir / "training_losses.png")))
    ap_keys = [k for k in keys if k.endswith("bbox/AP") or k.endswith("bbox/AP50")]
    if ap_keys:
        fig = Figure(figsize=(9, 4.5))
        ax = fig.subplots()
        for k in ap_keys:
            x, y = _series(records, k)
            line = ax.plot(x, y, "o-", label=k, ms=4)[0]
            if x:  # the latest value, readable even when there was a single evaluation
                ax.annotate(
                    f"{y[-1]:.1f}",
                    (x[-1], y[-1]),
                    textcoords="offset points",
                    xytext=(-6, 6),
                    ha="right",
                    fontsize=8,
                    color=line.get_color(),
                )
        ax.set_xlim(0, max(records) * 1.03 + 1)  # the whole run, so a lone point has context
        ax.set_xlabel("iteration")
        ax.set_ylabel("COCO AP (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("evaluation during training")
        fig.tight_layout()
        made.append(("AP over iterations", save_figure(fig, out_dir / "training_ap.png")))
    return made


def _ci(ci) -> str:
    return (
        f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})"
        if isinstance(ci, list | tuple) and len(ci) == 2
        else ""
    )


def _roc(ax, roc: dict, label: str, points: dict) -> None:
    ax.plot(roc["fpr"], roc["tpr"], lw=1.8, label=label)
    for name, p in points.items():
        if isinstance(p, dict) and "sensitivity" in p and "specificity" in p:
            thr = f" @ {p['threshold']:.2f}" if isinstance(p.get("threshold"), int | float) else ""
            ax.plot(1 - p["specificity"], p["sensitivity"], "o", ms=6, label=f"{name}{thr}")
    ax.plot([0, 1], [0, 1], ":", color="gray", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def plot_evaluation(metrics: dict, out_dir) -> list[tuple[str, Path]]:
    """PR, FROC and ROC curves from the evaluation report; absent sections are skipped."""
    out_dir, made = Path(out_dir), []
    name = metrics.get("dataset", "")
    pr = metrics.get("pr")
    if pr and pr.get("recall"):
        fig = Figure(figsize=(5.5, 5))
        ax = fig.subplots()
        ap50 = metrics.get("coco", {}).get("overall", {}).get("AP50")
        ax.plot(pr["recall"], pr["precision"], lw=1.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
        extra = f", AP50 {ap50:.1f}" if isinstance(ap50, int | float) else ""
        ax.set_title(f"box PR at IoU {pr.get('iou_threshold', 0.5):g}{extra}\n{name}", fontsize=10)
        fig.tight_layout()
        made.append(("Precision-recall (boxes)", save_figure(fig, out_dir / "pr.png")))
    froc = metrics.get("froc")
    if froc and (froc.get("curve") or froc.get("fp_per_image")):
        fig = Figure(figsize=(6.5, 5))
        ax = fig.subplots()
        curve = froc.get("curve") or {}
        if curve.get("fp_per_image"):
            pts = [
                (x, y)
                for x, y in zip(curve["fp_per_image"], curve["sensitivity"], strict=True)
                if x > 0
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), lw=1.8, label="FROC")
        if froc.get("fp_per_image"):
            ax.plot(froc["fp_per_image"], froc["sensitivity"], "o", ms=6, label="operating points")
        ax.set_xscale("log", base=2)
        ticks = froc.get("fp_per_image") or [0.125, 0.25, 0.5, 1, 2, 4, 8]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlim(min(ticks) / 4, max(ticks) * 1.5)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positives per image (log scale)")
        ax.set_ylabel("sensitivity (lesions hit)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
        score = froc.get("score")
        crit = froc.get("criterion", "iou")
        rule = f"IoU ≥ {froc.get('iou_threshold', 0.5):g}" if crit == "iou" else "centre in box"
        head = f"FROC score {score:.3f}{_ci(froc.get('ci95'))}" if score is not None else "FROC"
        ax.set_title(f"{head}\nhit: {rule} · {name}", fontsize=10)
        fig.tight_layout()
        made.append(("FROC", save_figure(fig, out_dir / "froc.png")))
    for key, title, fname in (
        ("image_level", "Image-level ROC", "roc_image.png"),
        ("study_level", "Study-level ROC", "roc_study.png"),
    ):
        sec = metrics.get(key)
        if not sec or not (sec.get("roc") or {}).get("fpr"):
            continue
        ci = sec.get("ci95")
        auc_ci = ci.get("auroc") if isinstance(ci, dict) else ci
        label = f"AUROC {sec['auroc']:.3f}{_ci(auc_ci)}" if "auroc" in sec else "ROC"
        fig = Figure(figsize=(5.5, 5.5))
        ax = fig.subplots()
        points = {k: sec.get(k) for k in ("at_threshold", "youden")}
        _roc(ax, sec["roc"], label, points)
        kappa = f", kappa {sec['kappa']:.3f}" if isinstance(sec.get("kappa"), int | float) else ""
        ax.set_title(f"{title} (score: {sec.get('method', 'max')}{kappa})\n{name}", fontsize=10)
        fig.tight_layout()
        made.append((title, save_figure(fig, out_dir / fname)))
    made += _plot_body_parts(metrics, out_dir)
    return made


def _num(v) -> float:
    return float(v) if isinstance(v, int | float) else math.nan


def _plot_body_parts(metrics: dict, out_dir: Path) -> list[tuple[str, Path]]:
    ap = metrics.get("coco", {}).get("per_body_part") or {}
    froc = (metrics.get("froc") or {}).get("per_body_part") or {}
    study = (metrics.get("study_level") or {}).get("per_body_part") or {}
    series = [
        ("box AP50 / 100", {p: _num(v.get("AP50")) / 100 for p, v in ap.items()}),
        ("FROC score", {p: _num(v.get("score")) for p, v in froc.items()}),
        ("study AUROC", {p: _num(v.get("auroc")) for p, v in study.items()}),
    ]
    series = [(label, vals) for label, vals in series if vals]
    parts = sorted({p for _, vals in series for p in vals})
    if not parts:
        return []
    fig = Figure(figsize=(max(6, 1.3 * len(parts) + 2), 4.5))
    ax = fig.subplots()
    width = 0.8 / len(series)
    for k, (label, vals) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(parts))]
        ax.bar(
            xs,
            [vals.get(p, 0.0) if not math.isnan(vals.get(p, 0.0)) else 0 for p in parts],
            width,
            label=label,
        )
    ax.set_xticks(range(len(parts)), [p.replace("XR_", "") for p in parts], fontsize=8)
    ax.set_ylim(0, 1.18)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncol=len(series), loc="upper center")
    ax.set_title(f"per body part · {metrics.get('dataset', '')}", fontsize=10)
    fig.tight_layout()
    return [("Per body part", save_figure(fig, out_dir / "per_body_part.png"))]
