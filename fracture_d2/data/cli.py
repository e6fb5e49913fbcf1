"""Command-line pieces shared by the ``datasets/*.py`` converters (they stay thin)."""

from __future__ import annotations

import argparse
import sys

from .errors import DataError
from .output import format_summary
from .validate import MAX_PIXELS


def add_validation_args(p: argparse.ArgumentParser) -> None:
    """The validator's options: ``--skip-invalid``, ``--tolerance``, ``--max-pixels``."""
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip bad images/boxes and count them by reason (default: stop at the first)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=2.0,
        help="px a box may overshoot the image and still be clipped (default 2)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        help=f"refuse larger images as decompression bombs (default {MAX_PIXELS})",
    )


def add_class_map_arg(p: argparse.ArgumentParser) -> None:
    """``--class-map``: keep / rename / merge classes."""
    p.add_argument(
        "--class-map",
        default=None,
        help="keep/rename/merge classes: 'fracture', 'Fracture=fracture',\n"
        "'fracture,boneanomaly=fracture', or a JSON/YAML file {class: new or null};\n"
        "classes not named are dropped and counted (default: keep all)",
    )


def add_split_args(p: argparse.ArgumentParser) -> None:
    """Splitting a folder that defines no splits: fractions, grouping, seed."""
    p.add_argument("--val-fraction", type=float, default=0.0, help="share of groups for val")
    p.add_argument("--test-fraction", type=float, default=0.0, help="share of groups for test")
    p.add_argument(
        "--group-regex",
        default=None,
        help="regex on the file stem whose match (group 1 if any) keeps images together,\n"
        "e.g. '^(\\d+)_' for a leading patient id (default: each image alone)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split")


def split_kwargs(args) -> dict:
    """The converters' split and class-map keyword arguments from parsed ``args``
    (:func:`add_split_args`, :func:`add_class_map_arg`)."""
    return {
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "group_regex": args.group_regex,
        "seed": args.seed,
        "class_map": args.class_map,
    }


def validation_kwargs(args) -> dict:
    """The validator's keyword arguments from parsed ``args``."""
    return {
        "skip_invalid": args.skip_invalid,
        "tolerance": args.tolerance,
        "max_pixels": args.max_pixels,
    }


def run_converter(convert, out, summary_file=None) -> int:
    """Call ``convert()``; print its summary, or one error line. Returns the exit status."""
    try:
        summary = convert()
    except (DataError, ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary, out, summary_file))
    return 0
