"""Other finished runs drawn in one figure with this one (--compare RUN_DIR ...)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from map_common.errors import MAPError
from src.run.mode_registry import MODES, either
from src.core.objectives import file_prefix
from src.run.results import ScalingResults, load_front, read_run_info
from task_vectors.merge_methods import METHODS as MERGE_METHODS, label_of

METHOD_LABELS = {name: method.label for name, method in MERGE_METHODS.items()}


def method_label(merge_method: str) -> str:
    """'MAP (TA)', 'MAP (DARE)', ... as the original's legend names its fronts."""
    return f"MAP ({label_of(merge_method)})"


def load_compared(paths, config) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(label, predicted front [n, T], real front points [m, T] or None) of each run."""
    out = []
    for path in map(Path, paths):
        info = read_run_info(path)
        mode = MODES.get((info or {}).get("method"))
        if mode is None or not mode.supports_baselines:
            raise MAPError(f"--compare {path}: not a finished "
                           f"{either(MODES.names(lambda m: m.supports_baselines))} run")
        if info.get("models") != list(config.models) or \
                info.get("datasets") != list(config.datasets):
            raise MAPError(f"--compare {path}: it merges {info.get('models')} on "
                           f"{info.get('datasets')}, this run {list(config.models)} on "
                           f"{list(config.datasets)}")
        if info.get("metric") != config.metric.name:
            raise MAPError(f"--compare {path}: its metric is {info.get('metric')}, this run's "
                           f"is {config.metric.name}")
        names = file_prefix(config.models)
        _, F = load_front(path / f"{names}pareto_front.json", width=config.T)
        real_path = path / f"{names}pareto_front_real.json"
        real = None
        if real_path.exists():
            real = ScalingResults(real_path, config.models, readonly=True).arrays(
                config.datasets, config.metric.name)[1]
        label = method_label(info.get("arguments", {}).get("merge_method", "ta"))
        out.append((label, F, real))
    return out
