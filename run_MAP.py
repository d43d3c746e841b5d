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

from args import parse_arguments
from map_common.errors import MAPError


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("root").setLevel(logging.ERROR)  # open_clip's "initialized randomly"
    warnings.filterwarnings("ignore", category=FutureWarning)
    from src.pipelines import run

    try:
        run(args)
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
