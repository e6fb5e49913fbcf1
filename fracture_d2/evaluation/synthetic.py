"""Random MURA-like ground truth and predictions, for the speed benchmark and tests.

The structure follows MURA valid (3,197 images in 1,199 studies of 783 patients, 7 body
parts, about 40% positive studies); a few positive images are left unannotated like the
positives without boxes of ``<name>_test_all``. Predictions jitter most lesions (higher
scores) and fill each image up to a fixed count with background boxes (lower scores).
"""

from __future__ import annotations

import numpy as np

from ..data.mura import BODY_PARTS


def make_case(
    n_images: int = 3197,
    dets_per_image: int = 100,
    seed: int = 0,
    unannotated_fraction: float = 0.05,
) -> tuple[dict, list]:
    """A COCO dataset dict (with MURA metadata) and COCO-format predictions for it."""
    rng = np.random.default_rng(seed)
    images, anns, preds = [], [], []
    patient, study = 0, 0
    while len(images) < n_images:
        patient += 1
        part = BODY_PARTS[rng.integers(len(BODY_PARTS))]
        for _ in range(1 + rng.binomial(2, 0.25)):
            study += 1
            positive = rng.random() < 0.4
            label = "positive" if positive else "negative"
            sid = f"valid/{part}/patient{patient:05d}/study{study}_{label}"
            for k in range(1 + rng.binomial(4, 0.4)):
                if len(images) == n_images:
                    break
                iid = len(images) + 1
                w, h = (int(v) for v in rng.integers(380, 513, 2))
                n_les = int(rng.integers(1, 4)) if positive and rng.random() < 0.85 else 0
                annotated = not (positive and rng.random() < unannotated_fraction)
                images.append(
                    {
                        "id": iid,
                        "file_name": f"MURA-v1.1/{sid}/image{k + 1}.png",
                        "width": w,
                        "height": h,
                        "body_part": part,
                        "patient_id": patient,
                        "study_id": sid,
                        "study_label": int(positive),
                        "image_label": int(positive),
                        "annotated": annotated,
                    }
                )
                for _ in range(n_les if annotated else 0):
                    bw, bh = rng.uniform(15, 110, 2)
                    x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                    anns.append(
                        {
                            "id": len(anns) + 1,
                            "image_id": iid,
                            "category_id": 1,
                            "bbox": [x, y, bw, bh],
                            "area": bw * bh,
                            "iscrowd": 0,
                        }
                    )
                    if rng.random() < 0.8:
                        j = rng.normal(0, 0.12, 4) * [bw, bh, bw, bh]
                        preds.append(
                            {
                                "image_id": iid,
                                "category_id": 1,
                                "bbox": [x + j[0], y + j[1], bw + j[2], bh + j[3]],
                                "score": float(rng.beta(5, 2)),
                            }
                        )
                n_bg = dets_per_image - sum(p["image_id"] == iid for p in preds[-3:])
                bw, bh = rng.uniform(10, 150, (2, n_bg))
                xs, ys = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                scores = rng.beta(1, 6 if not positive else 4, n_bg)
                preds.extend(
                    {
                        "image_id": iid,
                        "category_id": 1,
                        "score": float(s),
                        "bbox": [float(a), float(b), float(c), float(d)],
                    }
                    for a, b, c, d, s in zip(xs, ys, bw, bh, scores, strict=True)
                )
    coco = {
        "info": {"description": "synthetic MURA-valid-like case"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "fracture"}],
    }
    return coco, preds
