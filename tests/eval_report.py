"""A hand-written evaluation report in the format tools/evaluate.py writes (the contract)."""

from __future__ import annotations

import numpy as np


def eval_metrics(dataset: str = "mura_synthetic_test_all") -> dict:
    """A plausible ``metrics.json`` of tools/evaluate.py with every section filled."""
    r = np.linspace(0, 0.85, 30)
    fpr = np.linspace(0, 1, 21)
    tpr = np.clip(np.sqrt(fpr) * 1.05, 0, 1)
    fppi = [0.125, 0.25, 0.5, 1, 2, 4, 8]
    sens = [0.35, 0.48, 0.61, 0.72, 0.80, 0.84, 0.85]
    parts = ["XR_ELBOW", "XR_FINGER", "XR_WRIST"]
    return {
        "dataset": dataset,
        "predictions": "coco_instances_results.json",
        "n_images": 201,
        "coco": {
            "overall": {
                "AP": 31.2,
                "AP50": 66.0,
                "AP75": 20.1,
                "APs": 10.0,
                "APm": 33.0,
                "APl": 40.0,
            },
            "per_body_part": {
                p: {"AP": 30.0 + i, "AP50": 60.0 + 5 * i} for i, p in enumerate(parts)
            },
        },
        "pr": {"iou_threshold": 0.5, "recall": r.tolist(), "precision": (1 - 0.6 * r**2).tolist()},
        "froc": {
            "criterion": "iou",
            "iou_threshold": 0.5,
            "fp_per_image": fppi,
            "sensitivity": sens,
            "score": float(np.mean(sens)),
            "ci95": [0.60, 0.72],
            "curve": {"fp_per_image": [0.0] + fppi, "sensitivity": [0.0] + sens},
        },
        "image_level": {
            "method": "max",
            "auroc": 0.9,
            "ci95": [0.85, 0.94],
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": fpr[::-1].tolist()},
            "at_threshold": {
                "threshold": 0.5,
                "sensitivity": 0.8,
                "specificity": 0.85,
                "ppv": 0.7,
                "npv": 0.9,
                "f1": 0.75,
            },
            "youden": {"threshold": 0.4, "sensitivity": 0.85, "specificity": 0.82},
        },
        "study_level": {
            "method": "max",
            "kappa": 0.7,
            "auroc": 0.91,
            "ci95": {"kappa": [0.6, 0.8], "auroc": [0.86, 0.95]},
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
            "per_body_part": {
                p: {"kappa": 0.6 + 0.1 * i, "auroc": 0.85 + 0.03 * i, "n_studies": 20}
                for i, p in enumerate(parts)
            },
        },
    }
