#!/usr/bin/env python
"""MAP: merge fine-tuned models by task arithmetic and find the Pareto front of trade-offs.

    python run_MAP.py --demo --method map          # the embedded demo zoo, 2 tasks
    python run_MAP.py --method nested --save /checkpoints/ViT-B-32 --data-location /data

A mistake in the input (a missing file, an unknown dataset, impossible settings) is one
line on stderr and exit code 2.
"""
from __future__ import annotations

import logging
import sys
import warnings

from args import DEFAULTS, parse_arguments
from map_common.errors import MAPError


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_arguments(argv)
    except SystemExit as exc:  # --help, or a bad flag (already one line on stderr)
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("root").setLevel(logging.ERROR)  # open_clip's "initialized randomly"
    warnings.filterwarnings("ignore", category=FutureWarning)
    from src.config import build_config
    from src.modes import run

    try:
        run(build_config(args, DEFAULTS))
    except MAPError as exc:
        print(f"run_MAP.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nrun_MAP.py: interrupted; every finished evaluation is stored. Resume with "
              f"--results-path {args.results_path} --exp-id {args.exp_id}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
