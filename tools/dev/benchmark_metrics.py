#!/usr/bin/env python3
"""Time the evaluation suite on a MURA-valid-sized synthetic case (default: 3,197 images x 100
detections, 1,000 bootstrap resamples) pinned to N CPU cores.

Times reading the dataset JSON and the predictions JSON, every metric section and writing the
report, best and median of --repeat runs. --compare-pycocotools also times pycocotools'
COCOeval on the same detections (overall AP only) and checks that the numbers agree.

Example:
    python tools/dev/benchmark_metrics.py --cores 2 --repeat 3 --compare-pycocotools
"""

import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=3197)
    p.add_argument("--dets", type=int, default=100, help="detections per image")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--cores", type=int, default=2, help="CPU cores to run on (and BLAS threads)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare-pycocotools", action="store_true")
    p.add_argument("--max-seconds", type=float, help="exit 1 if the best total exceeds this")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    # before numpy is imported: BLAS threads and CPU affinity
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.cores)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: a.cores]
        os.sched_setaffinity(0, cpus)
    import json
    import statistics
    import tempfile
    import time
    from pathlib import Path

    from fracture_d2.evaluation.inputs import load_ground_truth
    from fracture_d2.evaluation.predictions import load_predictions
    from fracture_d2.evaluation.report import write_report
    from fracture_d2.evaluation.suite import EvalOptions, evaluate_predictions
    from fracture_d2.evaluation.synthetic import make_case

    coco, preds = make_case(a.images, a.dets, a.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench_metrics_"))
    (tmp / "gt.json").write_text(json.dumps(coco))
    (tmp / "preds.json").write_text(json.dumps(preds))
    print(
        f"case: {len(coco['images'])} images, {len(coco['annotations'])} lesions, "
        f"{len(preds)} detections; {a.bootstrap} bootstrap resamples; "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} cores"
    )
    runs = []
    for _ in range(a.repeat):
        t = {}
        t0 = time.perf_counter()
        gt = load_ground_truth(tmp / "gt.json", "bench")
        t["read dataset json"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        p = load_predictions(tmp / "preds.json", gt)
        t["read predictions json"] = time.perf_counter() - t0
        tables = {}
        t0 = time.perf_counter()
        sections = {}
        m = evaluate_predictions(gt, p, EvalOptions(bootstrap=a.bootstrap), tables, sections)
        t["metrics (all)"] = time.perf_counter() - t0
        t.update({f"  {k}": v for k, v in sections.items()})
        t0 = time.perf_counter()
        write_report(m, tmp / "out", tables)
        t["write report"] = time.perf_counter() - t0
        t["total"] = sum(v for k, v in t.items() if not k.startswith(" "))
        runs.append(t)
    print(f"\n{'step':<24}{'best s':>9}{'median s':>10}")
    for k in runs[0]:
        vals = [r[k] for r in runs]
        print(f"{k:<24}{min(vals):>9.3f}{statistics.median(vals):>10.3f}")
    c = m["coco"]["overall"]
    print(
        f"\nAP {c['AP']:.3f}  AP50 {c['AP50']:.3f}  FROC {m['froc']['score']:.4f}  "
        f"image AUROC {m['image_level']['auroc']:.4f}  study kappa "
        f"{m['study_level']['kappa']:.4f}"
    )
    if a.compare_pycocotools:
        import contextlib
        import io

        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            cg = COCO(str(tmp / "gt.json"))
            ev = COCOeval(cg, cg.loadRes(str(tmp / "preds.json")), "bbox")
            ev.params.imgIds = sorted(im["id"] for im in coco["images"] if im["annotated"])
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        ref = 100 * ev.stats[0], 100 * ev.stats[1]
        same = max(abs(ref[0] - c["AP"]), abs(ref[1] - c["AP50"])) < 1e-9
        print(
            f"pycocotools COCOeval (overall only): {time.perf_counter() - t0:.1f} s, "
            f"AP {ref[0]:.3f} AP50 {ref[1]:.3f} "
            f"({'same as ours' if same else 'DIFFERENT from ours'})"
        )
    best = min(r["total"] for r in runs)
    print(f"\nbest total: {best:.2f} s")
    return 1 if a.max_seconds is not None and best > a.max_seconds else 0


if __name__ == "__main__":
    sys.exit(main())
