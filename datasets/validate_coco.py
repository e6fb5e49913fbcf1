#!/usr/bin/env python3
"""Validate any COCO detection JSON against its images (the same checks every importer runs).

Checks: missing/unreadable images, truncated or corrupt files (PNG IEND / JPEG EOI trailer;
only suspicious files are decoded), images far larger than any radiograph, file names escaping
the image root, declared sizes that differ from the file, duplicate ids, unknown image or
category ids, NaN / empty / out-of-image boxes (clipped within --tolerance px).
Stops at the first problem with one line naming file and id; --skip-invalid counts them all.

Examples:
    python datasets/validate_coco.py --json datasets/mura/annotations/mura_train.json \\
        --image-root datasets/mura
    python datasets/validate_coco.py --json export.json --image-root images --skip-invalid \\
        --out export_clean.json
"""

import argparse
import json
import sys

from fracture_d2.data.check_coco import check_coco_file
from fracture_d2.data.cli import add_validation_args, run_converter, validation_kwargs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", required=True, help="COCO JSON file")
    p.add_argument("--image-root", required=True, help="folder file_name values are relative to")
    p.add_argument("--out", default=None, help="write the clean JSON here (with --skip-invalid)")
    p.add_argument("--report", default=None, help="also write the report as JSON here")
    add_validation_args(p)
    a = p.parse_args(argv)

    def check():
        report = check_coco_file(a.json, a.image_root, a.out, **validation_kwargs(a))
        if a.report:
            with open(a.report, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2)
        return report

    status = run_converter(check, ".", summary_file=a.report or "none (--report FILE to save)")
    if status == 0 and a.skip_invalid and not a.out:
        print("note: nothing was written; pass --out to save the clean JSON")
    return status


if __name__ == "__main__":
    sys.exit(main())
