"""Command-line helper shared by tools/predict.py and tools/visualize.py."""

from __future__ import annotations

import argparse
import sys

from fracture_d2.config import get_fracture_cfg


def _is_config_key(token: str, cfg) -> bool:
    node = cfg
    for part in token.split("."):
        if not part.isupper() or part not in node:
            return False
        node = node[part]
    return True


def parse_with_opts(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse ``argv`` whose tail is ``KEY VALUE`` config overrides, into ``namespace.opts``.

    The overrides start at the first token that is a config key (``MODEL.WEIGHTS``, ``SEED``),
    so they may follow an option taking several values (``--input a.png b.dcm MODEL.WEIGHTS
    m.pth``), which argparse alone would swallow. Options after the overrides are an error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = get_fracture_cfg()
    start = next((i for i, a in enumerate(argv) if _is_config_key(a, cfg)), len(argv))
    args = parser.parse_args(argv[:start])
    args.opts = argv[start:]
    late = [a for a in args.opts if a.startswith("--")]
    if late:
        parser.error(f"{' '.join(late)}: options go before the KEY VALUE config overrides")
    return args
