#!/usr/bin/env python3
"""Generate a synthetic dataset laid out exactly like MURA-v1.1 (plus a box CSV).

Examples:
    python datasets/generate_synthetic_mura.py --out datasets/mura_synthetic --patients 200 --seed 0
    # the public release's exact counts (40,005 images), tiny images: a full-scale test tree
    python datasets/generate_synthetic_mura.py --out /tmp/mura_full --release-counts --max-side 32
"""

import argparse
import json
import sys

from fracture_d2.data.synth_mura import generate_synthetic_mura


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="folder to create MURA-v1.1/ and boxes.csv in")
    p.add_argument("--patients", type=int, default=200, help="number of patients")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=0.15,
        help="share of patients in the official 'valid' split (the test split)",
    )
    p.add_argument("--max-side", type=int, default=512, help="longest image side (MURA: 512)")
    p.add_argument(
        "--box-fraction",
        type=float,
        default=1.0,
        help="share of positive images that get boxes in boxes.csv",
    )
    p.add_argument("--workers", type=int, default=None, help="render processes (default: cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MURA-v1.1/")
    p.add_argument(
        "--release-counts",
        action="store_true",
        help="exactly the public release's studies/images per body part and patients\n"
        "(40,005 images; --patients and --valid-fraction are ignored)",
    )
    p.add_argument(
        "--rgb-fraction", type=float, default=0.0, help="share of images saved as 3-channel PNGs"
    )
    a = p.parse_args(argv)
    try:
        summary = generate_synthetic_mura(
            a.out,
            a.patients,
            a.seed,
            a.valid_fraction,
            a.max_side,
            a.box_fraction,
            a.workers,
            a.overwrite,
            a.release_counts,
            a.rgb_fraction,
        )
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
