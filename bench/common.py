"""Shared helpers of the demo-zoo benches: run run_MAP.py in-process, an engine of our own
on the zoo's files, held-out evaluations, surrogates read back from _surrogates.json."""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from src.core.surrogate import apply_link  # noqa: E402


def add_common_flags(parser) -> None:
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the demo model is tiny: on 2 shared cores one "
                             "thread is fastest); 0 keeps torch's default")
    parser.add_argument("--keep", type=str, default=None,
                        help="write run directories here instead of a temporary folder")


def set_threads(n: int) -> int:
    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def demo_zoo():
    from task_vectors.zoo import default_root, ensure_zoo

    return ensure_zoo(default_root(), verbose=True)


def run_cli(*argv, quiet: bool = True) -> tuple[int, float]:
    """run_MAP.main in-process; (exit code, wall seconds). Progress bars and the summary are
    swallowed when quiet; an error line is shown."""
    import run_MAP

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    if quiet:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = run_MAP.main([str(a) for a in argv])
    else:
        rc = run_MAP.main([str(a) for a in argv])
    seconds = time.perf_counter() - start
    if rc != 0:
        print(err.getvalue().strip().splitlines()[-1:], file=sys.stderr)
        raise SystemExit(f"run_MAP.py {' '.join(map(str, argv))} exited with {rc}")
    return rc, seconds


def engine_for(zoo, tasks: Sequence[str]):
    """A MergeEngine on the zoo's checkpoints, tasks in the given order."""
    from task_vectors.engine import MergeEngine

    root = zoo.path
    return MergeEngine.from_checkpoints(
        model_name=zoo.model_name, pretrained=str(root / "zeroshot.pt"),
        finetuned={t: str(root / t / "finetuned.pt") for t in tasks},
        heads={t: str(root / f"head_{t}.pt") for t in tasks}, datasets=list(tasks),
        data_location=str(root))


def evaluate(engine, C: np.ndarray, datasets: Sequence[str], metric: str = "accuracy"
             ) -> np.ndarray:
    """[n, K] metric of each merged model θ(c)."""
    rows = []
    for c in np.atleast_2d(C):
        evals = engine.evaluate_at(c, datasets)
        rows.append([evals[d][metric] for d in datasets])
    return np.array(rows, dtype=float)


# ------------------------------------------------------------------ held-out split
def heldout_dataset(task: str) -> str:
    """The dataset name whose evaluation split is disjoint from ``task``'s, same classes.

    A ``<Base>Val`` task is evaluated on 10% of Base's train split; Base's own test split is
    disjoint from it and from the training data, so it serves as the held-out split for any
    registered dataset with a train and a test split. Point this at another zoo's held-out
    split (one function, used by every bench that scores on held-out data)."""
    base = task.removesuffix("Val")
    if base == task:
        raise ValueError(f"{task}: no held-out split known (expected a <Base>Val task)")
    return base


def equal_size_columns(n_heldout: int, n_eval: int, key: str, seed: int = 0) -> np.ndarray:
    """Which images of a held-out set of n_heldout to score on: n_eval of them (the
    evaluation split's size, so both splits carry the same noise), fixed per ``key``."""
    if n_heldout < n_eval:
        raise ValueError(f"{key}: the held-out split has {n_heldout} images, fewer than the "
                         f"evaluation split's {n_eval}")
    rng = np.random.default_rng([seed, *key.encode()])
    return np.sort(rng.choice(n_heldout, n_eval, replace=False))


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95 % interval (Student t; nan from one value)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1)
                                  / np.sqrt(len(v)))


def csv_with(*columns: str):
    """argparse type of --from-csv: a CSV file whose header holds ``columns`` (this bench's
    --csv), else one line and exit 2 (a missing file, a folder, another bench's CSV)."""
    def check(text: str) -> Path:
        path = Path(text)
        if not path.is_file():
            raise argparse.ArgumentTypeError(
                f"{text}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
        try:
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
        except (OSError, UnicodeDecodeError) as e:
            raise argparse.ArgumentTypeError(f"{text}: cannot read it ({e})") from None
        missing = [c for c in columns if c not in header]
        if missing:
            raise argparse.ArgumentTypeError(
                f"{text}: not this bench's --csv (no column {', '.join(missing)})")
        return path
    return check


def csv_value(text: str):
    """A CSV cell as the number it was written from (int, else float), else its text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def read_front(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = read_json(path)
    return np.array([json.loads(k) for k in data], dtype=float), np.array(list(data.values()))


def read_scaling(path: Path, models: Sequence[str], datasets: Sequence[str], metric: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    data = read_json(path)
    entries = [data[k] for k in sorted(data, key=int)]
    C = np.array([[e["models"][m] for m in models] for e in entries], dtype=float)
    Y = np.array([[e["evals"][d][metric] for d in datasets] for e in entries], dtype=float)
    return C, Y


def predict(params: dict, C: np.ndarray) -> np.ndarray:
    """A stored surrogate: link(1/2 c'Ac + b'c + e)."""
    C = np.atleast_2d(C)
    A, b = np.array(params["A"]), np.array(params["b"])
    z = 0.5 * np.einsum("ni,ij,nj->n", C, A, C) + C @ b + float(params["e"])
    return apply_link(z, params["link"])


def predict_all(params_path: Path, datasets: Sequence[str], C: np.ndarray) -> np.ndarray:
    params = read_json(params_path)
    return np.column_stack([predict(params[d], C) for d in datasets])


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1.0 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def spread_indices(n: int, k: int) -> np.ndarray:
    """k indices spread evenly over 0..n-1 (all when n <= k)."""
    return np.unique(np.round(np.linspace(0, n - 1, min(n, k))).astype(int))


@contextlib.contextmanager
def workdir(keep: str | None):
    import tempfile

    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
    else:
        with tempfile.TemporaryDirectory(prefix="map-bench-") as tmp:
            yield Path(tmp)
