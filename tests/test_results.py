"""The run directory: atomic JSON, the original formats, resume bookkeeping, reloading."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from map_common.errors import MAPError
from src.outputs import write_params
from src.results import (RunDirectory, ScalingResults, front_json, load_front, load_preference,
                         load_run, write_json)
from src.surrogate import fit_surrogates


def _evals(c):
    return {"AVal": {"accuracy": 0.5 + 0.1 * c[0], "loss": 1.0 - c[0]},
            "BVal": {"accuracy": 0.4 + 0.2 * c[1], "loss": 2.0 - c[1]}}


def test_scaling_results_original_format_and_resume(tmp_path):
    path = tmp_path / "run" / "A_Bscaling_results.json"
    store = ScalingResults(path, ["A", "B"])
    points = [(0.0, 1.0), (0.5, 0.25)]
    for c in points:
        store.add(c, _evals(c))
    stored = json.loads(path.read_text())
    assert list(stored) == ["0", "1"]
    assert stored["1"] == {"evals": _evals(points[1]), "models": {"A": 0.5, "B": 0.25}}
    again = ScalingResults(path, ["A", "B"])  # a resumed run sees every point, same order
    assert len(again) == 2 and again.get((0.5, 0.25 + 1e-12)) == _evals(points[1])
    assert again.get((0.5, 0.3)) is None
    C, Y = again.arrays(["AVal", "BVal"], "loss")
    np.testing.assert_allclose(C, points)
    np.testing.assert_allclose(Y, [[1.0, 1.0], [0.5, 1.75]])
    with pytest.raises(MAPError, match="another --exp-id"):
        ScalingResults(path, ["A", "C"])


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_write_json_is_atomic_and_shared(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = write_json(tmp_path / "x.json", {"a": np.arange(3), "b": np.float32(0.5)})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": [0, 1, 2], "b": 0.5}
    # what open() would give under this umask, not mkstemp's 0600
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary left


def test_front_round_trip(tmp_path):
    C = np.array([[0.1, 0.9], [0.7, 0.2]])
    F = np.array([[0.3, 0.8], [0.6, 0.5]])
    data = front_json(C, F)
    assert data == {"[0.1, 0.9]": [0.3, 0.8], "[0.7, 0.2]": [0.6, 0.5]}
    C_back, F_back = load_front(write_json(tmp_path / "front.json", data))
    np.testing.assert_array_equal(C_back, C)
    np.testing.assert_array_equal(F_back, F)


def test_load_run_reloads_points_front_and_surrogates(tmp_path):
    rng = np.random.default_rng(0)
    run = RunDirectory(tmp_path, "exp", ["A", "B"])
    store = ScalingResults(run.scaling_results, ["A", "B"])
    C = rng.uniform(0, 1, (8, 2))
    for c in C:
        store.add(c, _evals(c))
    Y = store.arrays(["AVal", "BVal"], "accuracy")[1]
    surrogates = fit_surrogates(C, Y, "sigmoid")
    write_params(run.path, run.names, ["AVal", "BVal"], surrogates, {"AVal": 1.0, "BVal": 1.0})
    write_json(run.pareto_front, front_json(C[:3], Y[:3]))
    run.write_run_json({"models": ["A", "B"], "datasets": ["AVal", "BVal"]})
    loaded = load_run(run.path)
    np.testing.assert_allclose(loaded["C"], C)
    np.testing.assert_allclose(loaded["accuracy"], Y)
    np.testing.assert_allclose(loaded["front_F"], Y[:3])
    np.testing.assert_allclose(load_front(run.pareto_front)[0], C[:3])
    for k, d in enumerate(["AVal", "BVal"]):
        np.testing.assert_allclose(loaded["surrogates"][d].predict(C), surrogates[k].predict(C))
    with pytest.raises(MAPError, match="not a MAP run directory"):
        load_run(tmp_path)


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "must map dataset names"),
    ("a: [", "not valid YAML"),
])
def test_load_preference_errors(tmp_path, text, message):
    path = tmp_path / "pref.yaml"
    path.write_text(text)
    with pytest.raises(MAPError, match=message):
        load_preference(path)
    with pytest.raises(MAPError, match="not found"):
        load_preference(tmp_path / "missing.yaml")
