"""The run directory: atomic JSON writes, resume, and the original tool's file names.

``<results-path>/<exp-id>/`` holds ``<names>scaling_results.json`` (every evaluated
point), ``<names>_params.json`` and ``<names>_surrogates.json`` (surrogates), ``<names>pareto_front.json`` (the front),
figures, and ``run.json`` (arguments, versions, timings, what each file is).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from map_common.errors import MAPError
from map_common.files import atomic_write

Evals = dict[str, dict[str, float]]  # {dataset: {"accuracy": a, "loss": l}}
KEY_DECIMALS = 9  # coefficient vectors equal to 1e-9 are the same point


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON through a temporary file and an atomic rename: never half a file."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(jsonable(data), f, indent=1)

    return atomic_write(path, write)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MAPError(f"{path}: not valid JSON ({exc}); move it away to start afresh") from None


def jsonable(obj: Any) -> Any:
    """numpy arrays/scalars, tuples and paths -> plain JSON types, recursively."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def point_key(c: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(x), KEY_DECIMALS) + 0.0 for x in c)


class ScalingResults:
    """Evaluated points in the original format, kept in memory, rewritten atomically per point.

    File: {"0": {"evals": {dataset: {"accuracy", "loss"}}, "models": {model: c}}, ...}
    """

    def __init__(self, path: str | os.PathLike, models: Sequence[str]):
        self.path = Path(path)
        self.models = list(models)
        self.entries: list[dict] = []
        stored = read_json(self.path, {})
        for key in sorted(stored, key=int):
            entry = stored[key]
            if list(entry.get("models", {})) != self.models:
                raise MAPError(f"{self.path}: stored points merge {list(entry.get('models', {}))}, "
                               f"this run merges {self.models}; use another --exp-id")
            self.entries.append(entry)
        self._index = {point_key(self.coefficients_of(e)): e for e in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def coefficients_of(self, entry: Mapping) -> list[float]:
        return [float(entry["models"][m]) for m in self.models]

    def get(self, c: Sequence[float]) -> Evals | None:
        entry = self._index.get(point_key(c))
        return None if entry is None else entry["evals"]

    def add(self, c: Sequence[float], evals: Evals) -> None:
        entry = {"evals": evals, "models": dict(zip(self.models, map(float, c)))}
        self.entries.append(entry)
        self._index[point_key(c)] = entry
        write_json(self.path, {str(i): e for i, e in enumerate(self.entries)})

    def arrays(self, datasets: Sequence[str], metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(C [n, T], Y [n, K]) of every stored point, in evaluation order."""
        C = np.array([self.coefficients_of(e) for e in self.entries], dtype=float)
        Y = np.array([[e["evals"][d][metric] for d in datasets] for e in self.entries],
                     dtype=float)
        return C.reshape(len(self.entries), len(self.models)), Y.reshape(len(self.entries),
                                                                          len(datasets))


def front_json(C: np.ndarray, F: np.ndarray) -> dict[str, list[float]]:
    """The original pareto_front.json: {str(list(c)): [metric per task]}."""
    return {str([float(x) for x in c]): [float(v) for v in f] for c, f in zip(C, F)}


def load_front(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a pareto_front.json back as (C, F)."""
    data = read_json(path)
    if data is None:
        raise MAPError(f"{path}: no such front file")
    C = np.array([json.loads(k) for k in data], dtype=float)
    F = np.array(list(data.values()), dtype=float)
    return C, F


class RunDirectory:
    """``<results-path>/<exp-id>/`` and the names of the files in it."""

    def __init__(self, results_path: str | os.PathLike, exp_id: str, models: Sequence[str]):
        self.path = Path(results_path) / str(exp_id)
        self.names = "_".join(models)
        self.outputs: dict[str, str] = {}

    def file(self, name: str, description: str | None = None) -> Path:
        if description:
            self.outputs[name] = description
        return self.path / name

    @property
    def scaling_results(self) -> Path:
        return self.file(f"{self.names}scaling_results.json",
                         "every evaluated coefficient vector with accuracy and loss per dataset")

    @property
    def pareto_front(self) -> Path:
        return self.file(f"{self.names}pareto_front.json",
                         "amortized Pareto front: {coefficients: predicted metric per task}")

    def write_run_json(self, info: Mapping[str, Any]) -> Path:
        previous = read_json(self.path / "run.json", {})
        data = {**previous, **info, "outputs": {**previous.get("outputs", {}), **self.outputs}}
        return write_json(self.path / "run.json", data)


def load_preference(path: str | os.PathLike) -> dict:
    """A preference file: YAML (JSON is YAML too) mapping dataset -> weight."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise MAPError(f"preference file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MAPError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise MAPError(f"{path}: a preference file must map dataset names to weights, "
                       f"got {type(data).__name__}")
    return data


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for package in ("torch", "torchvision", "open_clip_torch", "numpy", "scikit-learn", "pymoo"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out



def load_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Reload a finished map/bayesian run: its run.json, the evaluated points (C, Y per
    metric), the predicted front (C, F) and the fitted surrogates, ready to predict."""
    from src.surrogate import QuadraticSurrogate

    run_dir = Path(run_dir)
    info = read_json(run_dir / "run.json")
    if info is None:
        raise MAPError(f"{run_dir}: no run.json; not a MAP run directory")
    names, models, datasets = "_".join(info["models"]), info["models"], info["datasets"]
    out: dict[str, Any] = {"info": info}
    store_path = run_dir / f"{names}scaling_results.json"
    if store_path.exists():
        store = ScalingResults(store_path, models)
        out["C"], out["accuracy"] = store.arrays(datasets, "accuracy")
        out["loss"] = store.arrays(datasets, "loss")[1]
    if (run_dir / f"{names}pareto_front.json").exists():
        out["front_C"], out["front_F"] = load_front(run_dir / f"{names}pareto_front.json")
    params = read_json(run_dir / f"{names}_surrogates.json")
    if params is not None:
        out["surrogates"] = {d: QuadraticSurrogate.from_params(p) for d, p in params.items()}
    return out
