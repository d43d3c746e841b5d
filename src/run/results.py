"""The run directory: atomic JSON writes, resume, and the original tool's file names.

``<results-path>/<exp-id>/`` holds ``<names>scaling_results.json`` (every evaluated
point), ``<names>_params.json`` and ``<names>_surrogates.json`` (surrogates), ``<names>pareto_front.json`` (the front),
figures, and ``run.json`` (arguments, versions, timings, what each file is).

Resume safety: ``fingerprint.json`` records everything that decides an evaluation's value
(a resume with other settings is refused), ``.lock`` keeps one run per directory, and each
evaluated point is appended to a journal (``<names>scaling_results.jsonl``) that is folded
into the JSON file at the end of a run and on resume.

Why ~300 lines: the journal-backed ScalingResults (append, fold, torn-line recovery) is
half of it; the rest are the small readers and writers every mode shares.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from map_common.errors import MAPError
from map_common.files import atomic_write
from map_common.jsonable import jsonable  # noqa: F401  (kept importable from here)
from src.core.objectives import file_prefix

Evals = dict[str, dict[str, float]]  # {dataset: {"accuracy": a, "loss": l, "entropy": h}}
KEY_DECIMALS = 9  # coefficient vectors equal to 1e-9 are the same point
# A nested run's stores over every task, by load_run's key: TA's sweep, and the merges
# between the tree's final model and TA (written by src.modes.nested_mode)
NESTED_STORES = {"task_arithmetic": "task_arithmetic_scaling_results.json",
                 "segment": "segment_scaling_results.json"}


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


def read_run_info(run_dir: str | os.PathLike) -> dict | None:
    """A finished run's run.json (None when there is none); one line when it is not an
    object (edited or damaged), for the readers of other runs (--truth, --compare,
    load_run)."""
    path = Path(run_dir) / "run.json"
    info = read_json(path)
    if info is not None and not isinstance(info, dict):
        raise MAPError(f"{path}: not a run record (expected an object); not a finished MAP "
                       "run directory")
    return info


def point_key(c: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(x), KEY_DECIMALS) + 0.0 for x in c)


class ScalingResults:
    """Evaluated points in the original format: kept in memory, appended to a journal.

    File: {"0": {"evals": {dataset: {"accuracy", "loss", "entropy"}}, "models": {model: c}},
    ...}
    Each ``add`` appends one JSON line to ``<file stem>.jsonl`` (flushed and fsync'd: constant
    cost per point); ``fold()`` rewrites the JSON file with every point and drops the journal.
    Opening a store folds what a killed run left in its journal; a torn last line (a kill
    during the append) is ignored, so that point is evaluated again. ``readonly`` stores
    (readers of a run that may still be going) never write.

    ``needs``: the metric the run reads. A stored point without it (evaluated before the
    metric was recorded, e.g. "entropy") counts as not evaluated: it is kept in the file
    but left out of ``get``/``arrays``/``len``, and evaluating it again replaces it.
    """

    def __init__(self, path: str | os.PathLike, models: Sequence[str], *, readonly: bool = False,
                 needs: str | None = None):
        self.path = Path(path)
        self.journal = journal_path(self.path)
        self.models = list(models)
        self.readonly = readonly
        self.needs = needs
        self.entries: list[dict] = []
        self.lacking: dict[tuple[float, ...], dict] = {}  # stored points without ``needs``
        self._index: dict[tuple[float, ...], dict] = {}
        self._handle = None
        stored = read_json(self.path, {})
        if not isinstance(stored, dict):
            raise MAPError(f"{self.path}: not a scaling-results file (expected a JSON object); "
                           "move it away to start afresh")
        try:
            keys = sorted(stored, key=int)
        except ValueError:
            raise MAPError(f"{self.path}: not a scaling-results file (keys must be 0, 1, ...); "
                           "move it away to start afresh") from None
        for key in keys:
            self._take(stored[key], self.path)
        for entry in read_journal(self.journal):
            if self.get(self.coefficients_of(self._check(entry, self.journal))) is None:
                self._take(entry, self.journal)  # else: folded already, journal not yet removed
        self._dirty = self.journal.exists()
        if not readonly:
            self.fold()

    def _check(self, entry: Any, source: Path) -> dict:
        models = list(entry.get("models", {})) if isinstance(entry, dict) else None
        if models != self.models:
            raise MAPError(f"{source}: stored points merge {models}, this run merges "
                           f"{self.models}; use another --exp-id")
        return entry

    def _take(self, entry: dict, source: Path) -> None:
        self._check(entry, source)
        key = point_key(self.coefficients_of(entry))
        if not self._has_needed(entry):
            self.lacking[key] = entry
            return
        self.lacking.pop(key, None)
        self.entries.append(entry)
        self._index[key] = entry

    def _has_needed(self, entry: Mapping) -> bool:
        return self.needs is None or all(
            isinstance(v, Mapping) and self.needs in v for v in entry["evals"].values())

    def __len__(self) -> int:
        return len(self.entries)

    def coefficients_of(self, entry: Mapping) -> list[float]:
        return [float(entry["models"][m]) for m in self.models]

    def get(self, c: Sequence[float]) -> Evals | None:
        entry = self._index.get(point_key(c))
        return None if entry is None else entry["evals"]

    def add(self, c: Sequence[float], evals: Evals) -> None:
        if self.readonly:
            raise RuntimeError(f"{self.path}: opened read-only")
        entry = jsonable({"evals": evals, "models": dict(zip(self.models, map(float, c)))})
        line = json.dumps(entry) + "\n"
        # Memory first: a Ctrl-C/SIGTERM landing anywhere below still gets the point folded.
        self.lacking.pop(point_key(c), None)
        self.entries.append(entry)
        self._index[point_key(c)] = entry
        self._dirty = True
        if self._handle is None:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.journal, "a")
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def fold(self) -> None:
        """Write every point into the JSON file (atomically), then drop the journal."""
        if self.readonly or not self._dirty:
            return
        every = [*self.lacking.values(), *self.entries]
        write_json(self.path, {str(i): e for i, e in enumerate(every)})
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.journal.unlink(missing_ok=True)
        self._dirty = False

    def retain(self, C: np.ndarray) -> None:
        """Keep only the points of C (in C's order) and rewrite the file: a store that is
        one run's output (the re-evaluated front), not a cache of every run's points."""
        kept = [self._index[point_key(c)] for c in np.atleast_2d(C) if point_key(c) in self._index]
        kept = list({id(e): e for e in kept}.values())
        if kept != self.entries or self.lacking:
            self.entries, self.lacking = kept, {}
            self._index = {point_key(self.coefficients_of(e)): e for e in kept}
            self._dirty = True
            self.fold()

    def close(self) -> None:
        """Fold: the JSON file is complete afterwards."""
        self.fold()

    def arrays(self, datasets: Sequence[str], metric: str, missing: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(C [n, T], Y [n, K]) of every stored point, in evaluation order; a point without
        ``metric`` is a KeyError, or ``missing`` when given."""
        C = np.array([self.coefficients_of(e) for e in self.entries], dtype=float)
        Y = np.array([[e["evals"][d][metric] if missing is None else
                       e["evals"][d].get(metric, missing) for d in datasets]
                      for e in self.entries], dtype=float)
        return C.reshape(len(self.entries), len(self.models)), Y.reshape(len(self.entries),
                                                                          len(datasets))


def journal_path(path: str | os.PathLike) -> Path:
    """``X.json`` -> ``X.jsonl``: the per-point journal beside a scaling-results file."""
    return Path(path).with_suffix(".jsonl")


def read_journal(path: str | os.PathLike) -> list[dict]:
    """The entries of a journal; a torn last line (killed mid-append) is left out."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entries.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if number == len(lines):  # torn by a kill during the append: evaluate it again
                break
            raise MAPError(f"{path}: line {number} is not JSON; move the file away to "
                           "evaluate its points again") from None
    return entries


def front_json(C: np.ndarray, F: np.ndarray, decimals: int | None = None
               ) -> dict[str, list[float]]:
    """The original pareto_front.json: {str(list(c)): [metric per task]}. ``decimals``
    rounds the keys' text (a grid's 0.6000000000000001 is written 0.6); values stay exact."""
    def key(c) -> str:
        return str([float(x) if decimals is None else round(float(x), decimals) + 0.0
                    for x in c])

    return {key(c): [float(v) for v in f] for c, f in zip(C, F)}


def grid_decimals(C: np.ndarray) -> int:
    """The fewest decimals that write every coefficient of a grid to 1e-9 (at most
    KEY_DECIMALS, the precision at which two points are the same)."""
    C = np.asarray(C, dtype=float)
    for d in range(KEY_DECIMALS + 1):
        if np.all(np.abs(np.round(C, d) - C) < 10.0 ** -KEY_DECIMALS):
            return d
    return KEY_DECIMALS


def load_front(path: str | os.PathLike, width: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Read a pareto_front.json back as (C, F); ``width``: the objectives F must have. One
    line (MAPError) when the file is not such a front: {"[c_1, ...]": [f_1, ...], ...}."""
    data = read_json(path)
    if data is None:
        raise MAPError(f"{path}: no such front file")
    bad = MAPError(f"{path}: not a front file (expected {{\"[c_1, ...]\": [metric per "
                   f"task], ...}}); move it away or rerun that run")
    if not isinstance(data, dict):
        raise bad
    try:
        C = np.array([json.loads(k) for k in data], dtype=float)
        F = np.array(list(data.values()), dtype=float)
    except (ValueError, TypeError):
        raise bad from None
    if data and (C.ndim != 2 or F.ndim != 2 or
                 (width is not None and (F.shape[1] != width or C.shape[1] != width))):
        raise bad
    return C, F


class RunDirectory:
    """``<results-path>/<exp-id>/``: the one writer of its file list (``outputs``, into
    run.json) and the owner of the stores a run opens in it (folded by ``close_stores``
    when the run ends, also when it is stopped)."""

    def __init__(self, results_path: str | os.PathLike, exp_id: str, models: Sequence[str],
                 metric: str | None = None):
        self.path = Path(results_path) / str(exp_id)
        self.metric = metric
        self.names = file_prefix(models)
        self.outputs: dict[str, str] = {}
        self.stores: list[ScalingResults] = []

    def store(self, path: str | os.PathLike, models: Sequence[str]) -> ScalingResults:
        """A scaling-results store of this run, folded by ``close_stores``; a stored point
        without the run's metric is evaluated again (ScalingResults ``needs``)."""
        store = ScalingResults(path, models, needs=self.metric)
        self.stores.append(store)
        return store

    def close_stores(self) -> None:
        """Fold every store opened for writing: each scaling-results JSON is complete."""
        while self.stores:
            self.stores.pop(0).close()

    def record(self, files: Mapping[str, str]) -> None:
        """Add files (name -> description) to the run's list."""
        self.outputs.update(files)

    def file(self, name: str, description: str | None = None) -> Path:
        if description:
            self.outputs[name] = description
        return self.path / name

    @property
    def scaling_results(self) -> Path:
        return self.file(f"{self.names}scaling_results.json",
                         "every evaluated coefficient vector with accuracy, loss and entropy "
                         "per dataset")

    @property
    def pareto_front(self) -> Path:
        return self.file(f"{self.names}pareto_front.json",
                         "amortized Pareto front: {coefficients: predicted metric per task}")

    def write_run_json(self, info: Mapping[str, Any]) -> Path:
        """run.json of this run alone: its information and the files it wrote (a reused
        --exp-id's earlier files are removed by outputs.remove_stale_outputs)."""
        return write_json(self.path / "run.json", {**info, "outputs": dict(self.outputs)})


def load_preference(path: str | os.PathLike) -> dict:
    """A preference file: YAML (JSON is YAML too) mapping dataset -> weight."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise MAPError(f"preference file not found: {path}")
    if path.is_dir():
        raise MAPError(f"--preference {path} is a folder; give a YAML or JSON file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise MAPError(f"{path}: not a text file; --preference needs YAML or JSON "
                       "{dataset: weight}") from None
    except OSError as exc:
        raise MAPError(f"cannot read preference file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
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
    """Reload a finished run: its run.json as ``info`` and, by mode,

    - map / bayesian: the evaluated points (``C``; ``accuracy``, ``loss`` and ``entropy``
      per dataset, NaN where a point was stored before entropy was recorded), the predicted
      front (``front_C``, ``front_F``), the fitted ``surrogates`` and ``final`` (the
      handed-over model: final_model/merge.json and its ``checkpoint`` path);
    - grid: every grid point (``C``, ``accuracy``, ``loss``, ``entropy``) and the grid's
      front (``front_C``, ``front_F``: real values);
    - nested: the merge ``tree`` (merge_tree.json), ``pairs`` (each round's run: ``C``,
      ``evals``, ``front_C``, ``front_F``, ``surrogates``, ``chosen``), ``final`` (the
      final model's coefficients and accuracies) and, when the run evaluated it (the TA
      context or floor), ``task_arithmetic``: TA's sweep over every task as points, and
      ``segment``: the merges between the tree's model and TA, when the floor evaluated them;
    - adamerging: ``adamerging`` (adamerging.json), the learned ``lambdas`` ([T], or [T, L]
      over ``adamerging["layers"]`` layer-wise; rows in ``info["models"]`` order), the
      entropy ``curve`` ([steps, T]) and ``final`` as map's;
    - a sweep: ``subsets``, each subset's run loaded as above.
    """
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if info is None:
        raise MAPError(f"{run_dir}: no run.json; not a MAP run directory")
    method = info.get("method", "map")
    if isinstance(info.get("summary"), dict) and info["summary"].get("sweep"):
        return {"info": info, "subsets": {row["subset"]: load_run(run_dir / row["subset"])
                                          for row in info["summary"]["subsets"]}}
    if method == "nested":
        return {"info": info, **_load_nested(run_dir)}
    if method == "adamerging":
        return {"info": info, **_load_adamerging(run_dir, _names_field(info, "models", run_dir))}
    if method not in ("map", "bayesian", "grid"):
        raise MAPError(f"{run_dir / 'run.json'}: a --method {method} run; load_run reads map, "
                       "bayesian, grid, nested and adamerging runs")
    models, datasets = (_names_field(info, key, run_dir) for key in ("models", "datasets"))
    names = file_prefix(models)
    out: dict[str, Any] = {"info": info, **_load_points(run_dir, names, models, datasets)}
    front = f"{names}pareto_front_grid.json" if method == "grid" else f"{names}pareto_front.json"
    if (run_dir / front).exists():
        out["front_C"], out["front_F"] = load_front(run_dir / front)
    out.update(_load_surrogates(run_dir, names))
    final = _read_final(run_dir)
    if final is not None:  # runs written before map and bayesian saved their pick have none
        out["final"] = final
    return out


def _read_final(run_dir: Path) -> dict[str, Any] | None:
    """final_model/merge.json with the path of the checkpoint beside it (None when there is
    none); one line when it is not an object (edited or damaged)."""
    path = run_dir / "final_model" / "merge.json"
    final = read_json(path)
    if final is None:
        return None
    if not isinstance(final, dict):
        raise MAPError(f"{path}: expected an object of the handed-over model's coefficients "
                       f"and accuracies, found {type(final).__name__} (edited?)")
    final["checkpoint"] = run_dir / "final_model" / "finetuned.pt"
    return final


def _load_adamerging(run_dir: Path, models: Sequence[str]) -> dict[str, Any]:
    """adamerging.json, its coefficients and entropy curve as arrays, and the final model."""
    record = read_json(run_dir / "adamerging.json")
    final = _read_final(run_dir)
    if not isinstance(record, dict) or final is None:
        raise MAPError(f"{run_dir}: an adamerging run without adamerging.json or "
                       "final_model/merge.json (not finished?)")
    try:
        per_task = [record["coefficients"][m] for m in models]
        lambdas = np.array([[row[k["name"]] for k in record["layers"]]
                            if isinstance(row, dict) else row for row in per_task], dtype=float)
        curve = record["entropy_curve"]["per_task"]
        curve = np.array([curve[d] for d in record["datasets"]], dtype=float).T
    except (KeyError, TypeError, ValueError):
        raise MAPError(f"{run_dir / 'adamerging.json'}: its coefficients or entropy curve "
                       "are missing or edited") from None
    return {"adamerging": record, "lambdas": lambdas, "curve": curve, "final": final}


def _names_field(info: Mapping[str, Any], key: str, run_dir: Path) -> list[str]:
    """run.json's list of model or dataset names; one line when it is missing or edited."""
    value = info.get(key)
    if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        raise MAPError(f"{run_dir / 'run.json'}: '{key}' is missing or not a list of names "
                       "(edited or damaged); load_run needs it to find the run's files")
    return value


def _load_points(folder: Path, names: str, models: Sequence[str], datasets: Sequence[str]
                 ) -> dict[str, np.ndarray]:
    store_path = folder / f"{names}scaling_results.json"
    if not (store_path.exists() or journal_path(store_path).exists()):
        return {}
    return _points(ScalingResults(store_path, models, readonly=True), datasets)  # may go on


def _points(store: ScalingResults, datasets: Sequence[str]) -> dict[str, np.ndarray]:
    """``C`` and each metric [n, K] of a store's points; NaN where a point lacks the metric
    (entropy: stores written before it was recorded)."""
    out = {}
    for metric in ("accuracy", "loss", "entropy"):
        out["C"], out[metric] = store.arrays(datasets, metric, missing=np.nan)
    return out


def _load_surrogates(folder: Path, names: str) -> dict[str, Any]:
    from src.core.surrogate import QuadraticSurrogate

    params = read_json(folder / f"{names}_surrogates.json")
    if params is None:
        return {}
    return {"surrogates": {d: QuadraticSurrogate.from_params(p) for d, p in params.items()}}


def _load_nested(run_dir: Path) -> dict[str, Any]:
    """The merge tree, each pair's run (its round folder) and the final model."""
    tree = read_json(run_dir / "merge_tree.json")
    if tree is None:
        raise MAPError(f"{run_dir}: a nested run without merge_tree.json (not finished?)")
    dataset_of = dict(zip(tree["models"], tree["datasets"]))
    pairs = []
    for k, rec in enumerate(tree["rounds"]):
        folder = run_dir / f"round{k + 1}"
        names, models = f"{rec['left']}_{rec['right']}", [rec["left"], rec["right"]]
        store = ScalingResults(folder / f"{names}scaling_results.json", models, readonly=True)
        C = store.arrays([], "accuracy")[0]
        pair = {"round": k + 1, "folder": folder, "labels": models, "tasks": rec["tasks"],
                "C": C, "evals": [e["evals"] for e in store.entries],
                "chosen": read_json(folder / "chosen.json"), "record": rec}
        if (folder / f"{names}pareto_front.json").exists():
            pair["front_C"], pair["front_F"] = load_front(folder / f"{names}pareto_front.json")
        pair.update(_load_surrogates(folder, names))
        pairs.append(pair)
    final = _read_final(run_dir)
    if final is None:
        raise MAPError(f"{run_dir}: a nested run without final_model/merge.json (not finished?)")
    out = {"tree": tree, "pairs": pairs, "final": final, "dataset_of": dataset_of}
    for key, name in NESTED_STORES.items():
        stored = run_dir / name
        if stored.exists() or journal_path(stored).exists():
            out[key] = _points(ScalingResults(stored, tree["models"], readonly=True),
                               tree["datasets"])
    return out
