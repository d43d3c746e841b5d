#!/usr/bin/env python
"""MAP: merge fine-tuned models by task arithmetic and find the Pareto front of trade-offs.

    python run_MAP.py --demo --method map          # the embedded demo zoo, 2 tasks
    python run_MAP.py --method nested --save /checkpoints/ViT-B-32 --data-location /data

A mistake in the input (a missing file, an unknown dataset, impossible settings) is one
line on stderr and exit code 2. Ctrl-C and SIGTERM (a batch system's time limit) stop the
run with every finished evaluation stored; the same command resumes it.
"""
from __future__ import annotations

import logging
import signal
import sys
import warnings
from pathlib import Path

from args import DEFAULTS, parse_arguments
from map_common.errors import MAPError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so it stops like Ctrl-C (stores are folded)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_arguments(argv)
    except SystemExit as exc:  # --help, or a bad flag (argparse printed its one line)
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("root").setLevel(logging.ERROR)  # open_clip's "initialized randomly"
    warnings.filterwarnings("ignore", category=FutureWarning)
    from src.run.config import build_config
    from src.run.mode_registry import unread_flags
    from src.modes import run
    from src.run.run_lock import RunLock

    run_dir = Path(args.results_path) / args.exp_id
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (e.g. called from a worker): leave signals be
        pass
    try:
        with RunLock(run_dir):
            config = build_config(args, DEFAULTS)
            for note in unread_flags(args, config.method):
                print(f"run_MAP.py: note: {note}", file=sys.stderr)
            run(config)  # open_run folds the stores, even when stopped
    except MAPError as exc:
        print(f"run_MAP.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what, code = ("interrupted by SIGTERM", 143) if isinstance(exc, Terminated) else \
            ("interrupted", 130)
        stored = (f"every finished evaluation is stored in {run_dir}" if run_dir.exists()
                  else "no evaluation had finished, nothing was stored")
        print(f"\nrun_MAP.py: {what}; the merge being evaluated was dropped, {stored}. "
              f"Resume with the same command (--results-path {args.results_path} "
              f"--exp-id {args.exp_id})", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
