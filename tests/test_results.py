"""The run directory: atomic JSON, the original formats, resume bookkeeping, reloading."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from map_common.errors import MAPError
from src.run.outputs import write_params
from src.run.results import (RunDirectory, ScalingResults, front_json, load_front, load_preference,
                         load_run, read_journal, write_json)
from src.core.surrogate import fit_surrogates


def _evals(c):
    return {"AVal": {"accuracy": 0.5 + 0.1 * c[0], "loss": 1.0 - c[0]},
            "BVal": {"accuracy": 0.4 + 0.2 * c[1], "loss": 2.0 - c[1]}}


def test_scaling_results_original_format_and_resume(tmp_path):
    path = tmp_path / "run" / "A_Bscaling_results.json"
    store = ScalingResults(path, ["A", "B"])
    points = [(0.0, 1.0), (0.5, 0.25)]
    for c in points:
        store.add(c, _evals(c))
    store.close()  # the end of a run folds the journal into the original file
    assert not path.with_suffix(".jsonl").exists()
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
    # an empty front reads back empty, as before the file's shape was checked
    C_none, F_none = load_front(write_json(tmp_path / "empty.json", {}))
    assert C_none.size == 0 and F_none.size == 0


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


@pytest.mark.parametrize("record", [{"datasets": ["AVal", "BVal"]},
                                    {"models": "A_B", "datasets": ["AVal", "BVal"]},
                                    {"models": ["A", "B"], "datasets": [1, 2]},
                                    {"models": [], "datasets": ["AVal", "BVal"]}])
def test_load_run_of_an_edited_record_is_one_line(record, tmp_path):
    run = RunDirectory(tmp_path, "exp", ["A", "B"])
    run.write_run_json(record)
    with pytest.raises(MAPError, match="is missing or not a list of names"):
        load_run(run.path)


def test_load_run_of_an_edited_merge_record_is_one_line(tmp_path):
    run = RunDirectory(tmp_path, "exp", ["A", "B"])
    store = ScalingResults(run.scaling_results, ["A", "B"])
    store.add((0.2, 0.4), _evals((0.2, 0.4)))
    run.write_run_json({"models": ["A", "B"], "datasets": ["AVal", "BVal"]})
    (run.path / "final_model").mkdir()
    write_json(run.path / "final_model" / "merge.json", {"coefficients": {"A": 0.2, "B": 0.4}})
    assert load_run(run.path)["final"]["checkpoint"] == run.path / "final_model" / "finetuned.pt"
    write_json(run.path / "final_model" / "merge.json", [0.2, 0.4])
    with pytest.raises(MAPError, match=r"merge.json: expected an object .* found list"):
        load_run(run.path)


def test_load_run_gives_entropy_and_nan_where_a_point_was_stored_without_it(tmp_path):
    run = RunDirectory(tmp_path, "exp", ["A", "B"])
    store = ScalingResults(run.scaling_results, ["A", "B"])
    old = _evals((0.2, 0.4))  # stored before entropy was recorded
    new = {d: {**m, "entropy": 0.7 + k} for k, (d, m) in enumerate(_evals((0.6, 0.1)).items())}
    store.add((0.2, 0.4), old)
    store.add((0.6, 0.1), new)
    run.write_run_json({"models": ["A", "B"], "datasets": ["AVal", "BVal"]})
    loaded = load_run(run.path)
    assert loaded["entropy"].shape == (2, 2)
    assert np.isnan(loaded["entropy"][0]).all()
    np.testing.assert_allclose(loaded["entropy"][1], [0.7, 1.7])
    np.testing.assert_allclose(loaded["loss"], [[0.8, 1.6], [0.4, 1.9]])


@pytest.mark.parametrize("data, message", [
    (b"[1, 2]", "must map dataset names"),
    (b"a: [", "not valid YAML"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not a text file"),
])
def test_load_preference_errors(tmp_path, data, message):
    path = tmp_path / "pref.yaml"
    path.write_bytes(data)
    with pytest.raises(MAPError, match=message):
        load_preference(path)
    with pytest.raises(MAPError, match="not found"):
        load_preference(tmp_path / "missing.yaml")
    with pytest.raises(MAPError, match="is a folder"):
        load_preference(tmp_path)


# ------------------------------------------------------------------ journal
def test_add_appends_one_line_per_point_and_never_rewrites_the_json(tmp_path):
    path = tmp_path / "A_Bscaling_results.json"
    store = ScalingResults(path, ["A", "B"])
    for i in range(5):
        store.add((i / 10, 1.0), _evals((i / 10, 1.0)))
        assert not path.exists()  # constant cost: only the journal grew
        assert len(path.with_suffix(".jsonl").read_text().splitlines()) == i + 1
    reader = ScalingResults(path, ["A", "B"], readonly=True)
    assert len(reader) == 5 and not path.exists()  # readers see the journal, write nothing
    store.fold()
    assert len(json.loads(path.read_text())) == 5
    store.add((0.9, 0.9), _evals((0.9, 0.9)))  # after a fold the journal starts again
    store.close()
    assert list(json.loads(path.read_text())) == [str(i) for i in range(6)]


def test_a_killed_runs_journal_is_folded_on_resume_and_a_torn_line_is_dropped(tmp_path):
    path = tmp_path / "A_Bscaling_results.json"
    store = ScalingResults(path, ["A", "B"])
    for c in [(0.0, 0.0), (0.5, 0.5)]:
        store.add(c, _evals(c))
    store.close()
    store = ScalingResults(path, ["A", "B"])
    store.add((0.25, 0.75), _evals((0.25, 0.75)))
    journal = path.with_suffix(".jsonl")
    with open(journal, "a") as f:  # kill -9 in the middle of the next append
        f.write('{"evals": {"AVal": {"accuracy": 0.5, "lo')
    assert len(read_journal(journal)) == 1
    resumed = ScalingResults(path, ["A", "B"])  # a new process: the old one never closed
    assert len(resumed) == 3 and resumed.get((0.25, 0.75)) == _evals((0.25, 0.75))
    assert not journal.exists()  # folded on resume
    stored = json.loads(path.read_text())
    assert list(stored) == ["0", "1", "2"]
    assert stored["2"]["models"] == {"A": 0.25, "B": 0.75}


def test_a_point_in_both_the_json_and_the_journal_is_kept_once(tmp_path):
    # A kill between the fold's rename and the journal's removal.
    path = tmp_path / "A_Bscaling_results.json"
    store = ScalingResults(path, ["A", "B"])
    store.add((0.1, 0.2), _evals((0.1, 0.2)))
    journal_text = path.with_suffix(".jsonl").read_text()
    store.close()
    path.with_suffix(".jsonl").write_text(journal_text)
    assert len(ScalingResults(path, ["A", "B"])) == 1


def test_garbage_in_the_middle_of_a_journal_is_one_error(tmp_path):
    path = tmp_path / "A_Bscaling_results.json"
    good = json.dumps({"evals": _evals((0, 0)), "models": {"A": 0.0, "B": 0.0}})
    path.with_suffix(".jsonl").write_text(f"{good}\nnot json\n{good}\n")
    with pytest.raises(MAPError, match="line 2 is not JSON"):
        ScalingResults(path, ["A", "B"])


def test_load_run_reads_a_journal_that_was_never_folded(tmp_path):
    run = RunDirectory(tmp_path, "exp", ["A", "B"])
    store = ScalingResults(run.scaling_results, ["A", "B"])
    store.add((0.3, 0.4), _evals((0.3, 0.4)))
    run.write_run_json({"models": ["A", "B"], "datasets": ["AVal", "BVal"]})
    loaded = load_run(run.path)
    np.testing.assert_allclose(loaded["C"], [[0.3, 0.4]])
    assert not run.scaling_results.exists()  # reading changed nothing
    store.close()
