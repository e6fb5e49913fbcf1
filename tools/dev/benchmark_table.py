#!/usr/bin/env python3
"""Print the README's speed table (markdown) from ``tools/benchmark.py`` JSON files.

python tools/dev/benchmark_table.py output/benchmark/*.json
"""

import argparse
import json
import sys
from pathlib import Path


def device_name(r: dict) -> str:
    if r.get("gpu"):
        return r["gpu"]
    return f"CPU, {r.get('threads')} threads"


def setting(r: dict) -> str:
    overrides = r.get("overrides") or []
    pairs = dict(zip(overrides[::2], overrides[1::2], strict=False))
    bits = [Path(r["config"]).stem, f"batch {r.get('images_per_batch')}"]
    bits.append(f"AMP {r['amp']}" if r.get("amp") else "fp32")
    if "INPUT.MIN_SIZE_TRAIN" in pairs:
        bits.append(f"short side {pairs['INPUT.MIN_SIZE_TRAIN']}")
    if pairs.get("FRACTURE.FAST.COMPILE_BACKBONE") == "True":
        mode = pairs.get("FRACTURE.FAST.COMPILE_MODE", "default")
        bits.append("compiled backbone" + ("" if mode == "default" else f" ({mode})"))
    if pairs.get("FRACTURE.FAST.BATCHED_HEADS") == "True":
        bits.append("batched heads")
    if pairs.get("FRACTURE.FAST.MATRIX_NMS") == "True":
        bits.append("matrix NMS")
    if pairs.get("FRACTURE.FAST.STATIC_INFERENCE") == "True":
        bits.append("static inference")
    sizes = [pairs.get(f"MODEL.RPN.{k}_NMS_TOPK_TRAIN") for k in ("PRE", "POST")]
    if any(sizes):
        bits.append("RPN train top-k " + "/".join(v or "config" for v in sizes))
    if "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE" in pairs:
        bits.append(f"{pairs['MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE']} RoIs/image")
    return ", ".join(bits)


def syncs(profile: dict) -> int:
    """Host-device waits per step: CUDA stream syncs on a GPU, else the operators that would
    wait there (``.item()`` and ``nonzero``)."""
    ops = profile["sync_ops_per_step"]
    if "cudaStreamSynchronize" in ops:
        return round(ops["cudaStreamSynchronize"])
    return round(ops.get("aten::item", 0) + ops.get("aten::nonzero", 0))


def busy_share(busy_ms: float, wall_ms: float) -> str:
    """GPU busy time and its share of the wall time (the rest the GPU waited for the host)."""
    return f"{busy_ms:.1f} ({busy_ms / wall_ms:.0%})"


def rows(r: dict) -> list[str]:
    out = []

    def row(measure: str, stock: str, project: str, ratio: str) -> None:
        out.append(
            f"| {device_name(r)} | {setting(r)} | {measure} | {stock} | {project} | {ratio} |"
        )

    t = r.get("train")
    if t:
        s, p = t["stock"], t["project"]
        mem = ""
        if s.get("peak_gpu_mem_gib") is not None:
            mem = f" (peak {s['peak_gpu_mem_gib']:.1f} / {p['peak_gpu_mem_gib']:.1f} GiB)"
        row(
            f"training img/s{mem}",
            f"{s['images_per_second']:.1f}",
            f"{p['images_per_second']:.1f}",
            f"{t['ratio']:.2f}x",
        )
    prof = (t or {}).get("profile")
    if prof:
        row(
            "host syncs per training step", *(str(syncs(prof[k])) for k in ("stock", "project")), ""
        )
        if all(prof[k].get("device_busy_ms_per_step") for k in ("stock", "project")):
            busy = [
                busy_share(
                    prof[k]["device_busy_ms_per_step"],
                    1000 * r["images_per_batch"] * t[k]["seconds_per_item"],
                )
                for k in ("stock", "project")
            ]
            row("GPU busy per training step, ms (share of the step)", *busy, "")
        if all(prof[k].get("ops_per_step") for k in ("stock", "project")):
            ops = [prof[k]["ops_per_step"] for k in ("stock", "project")]
            row(
                "operators per training step", *(f"{x:.0f}" for x in ops), f"{ops[1] / ops[0]:.2f}x"
            )
    ld = r.get("loader")
    if ld:
        s, p = ld["stock"], ld["project"]
        row(
            f"training data loader alone, img/s ({ld['workers']} workers)",
            f"{s['images_per_second']:.1f}",
            f"{p['images_per_second']:.1f}",
            f"{ld['ratio']:.2f}x",
        )
    gc = r.get("grad_clip")
    if gc:
        s, p = gc["stock"], gc["project"]
        what = f"gradient clipping ({gc['clip_type']}, {gc['parameter_tensors']} tensors)"
        row(
            f"{what}, ms / operators per step",
            f"{s['ms_per_step']:.1f} / {s['ops_per_step']}",
            f"{p['ms_per_step']:.1f} / {p['ops_per_step']}",
            f"time {gc['time_ratio']:.2f}x"
            + ("" if gc["same_gradients"] else " (gradients differ)"),
        )
    i = r.get("inference")
    if i:
        s, p = i["stock"], i["project"]
        row(
            "inference batch 1, ms",
            f"{s['batch1_latency_ms']:.1f}",
            f"{p['batch1_latency_ms']:.1f}",
            f"latency {i['latency_ratio']:.2f}x",
        )
        if s.get("batch1_device_busy_ms") and p.get("batch1_device_busy_ms"):
            busy = [busy_share(x["batch1_device_busy_ms"], x["batch1_latency_ms"]) for x in (s, p)]
            row("GPU busy per batch-1 image, ms (share of the latency)", *busy, "")
        if "batch1_sync_ops" in s and "batch1_sync_ops" in p:
            waits = [syncs({"sync_ops_per_step": x["batch1_sync_ops"]}) for x in (s, p)]
            row("host syncs per image, batch 1", *map(str, waits), "")
        if s.get("batch1_ops") and p.get("batch1_ops"):
            ops = (s["batch1_ops"], p["batch1_ops"])
            row("operators per image, batch 1", *map(str, ops), f"{ops[1] / ops[0]:.2f}x")
        key = next(k for k in s if k.endswith("_images_per_second"))
        n = key[len("batch") : -len("_images_per_second")]
        row(
            f"inference batch {n}, img/s",
            f"{s[key]:.1f}",
            f"{p[key]:.1f}",
            f"{i['throughput_ratio']:.2f}x",
        )
    c = r.get("compile")
    if c:
        row(
            "compiled: graphs / graph breaks / CUDA-graph skips",
            "",
            f"{c['graphs']} / {c['graph_breaks']} / {c['cudagraph_skips']}",
            "",
        )
    a = r.get("accuracy")
    if a:
        s, p = a["stock"], a["project"]
        row(
            "bbox AP50 / AP",
            f"{s['AP50']:.1f} / {s['AP']:.1f}",
            f"{p['AP50']:.1f} / {p['AP']:.1f}",
            "",
        )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    print("| device | setting | measure | stock | project | project/stock |")
    print("| --- | --- | --- | --- | --- | --- |")
    for f in a.files:
        try:
            r = json.loads(Path(f).read_text())
        except (OSError, ValueError) as e:
            print(f"error: {f}: {e}", file=sys.stderr)
            return 1
        for line in rows(r):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
