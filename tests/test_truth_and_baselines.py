"""--method grid, --truth, --reevaluate all, --baselines, --compare and --merge-method from
the CLI on the demo zoo: the files, their numbers against an independent engine, resume,
and one-line refusals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import CountingEvaluate

PAIR = ["LetterVal", "DigitVal"]
PER_AXIS = 6  # 36 grid merges: enough for a front, quick on 2 cores

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def _main(*argv) -> int:
    import run_MAP

    return run_MAP.main([str(a) for a in argv])


def _read(path: Path):
    return json.loads(Path(path).read_text())


def _argv(zoo_root, results, exp_id, method, *extra) -> list:
    return ["--demo", "--zoo-dir", zoo_root, "--method", method, "--n-gen", 40,
            "--zeroshot-merge-models", *PAIR, "--results-path", results, "--exp-id", exp_id,
            *extra]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("truth")


@pytest.fixture(scope="module")
def grid_run(results, zoo_root) -> Path:
    assert _main(*_argv(zoo_root, results, "grid", "grid",
                        "--grid-points-per-axis", PER_AXIS)) == 0
    return results / "grid"


@pytest.fixture(scope="module")
def map_truth_run(results, zoo_root, grid_run) -> Path:
    assert _main(*_argv(zoo_root, results, "map", "map", "--truth", grid_run,
                        "--reevaluate", "all", "--baselines")) == 0
    return results / "map"


@pytest.fixture(scope="module")
def engine(demo_zoo):
    from task_vectors.engine import MergeEngine

    zoo = demo_zoo.path
    return MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zoo / "zeroshot.pt"),
        finetuned={t: str(zoo / t / "finetuned.pt") for t in PAIR},
        heads={d: str(zoo / f"head_{d}.pt") for d in PAIR}, datasets=PAIR,
        data_location=str(zoo))


def _scaling(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = _read(path)
    entries = [data[k] for k in sorted(data, key=int)]
    C = np.array([[e["models"][m] for m in PAIR] for e in entries])
    Y = np.array([[e["evals"][d]["accuracy"] for d in PAIR] for e in entries])
    return C, Y


# ------------------------------------------------------------------ grid
def test_grid_evaluates_every_point_of_the_box_and_writes_its_front(grid_run, engine):
    names = "_".join(PAIR)
    C, Y = _scaling(grid_run / f"{names}scaling_results.json")
    axis = np.linspace(0, 1, PER_AXIS)
    expected = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    np.testing.assert_allclose(np.sort(C, axis=0), np.sort(expected, axis=0))
    # the front file holds exactly the non-dominated grid merges, with real values
    front = _read(grid_run / f"{names}pareto_front_grid.json")
    dominated = [any((Y[j] >= Y[i]).all() and (Y[j] > Y[i]).any() for j in range(len(Y)))
                 for i in range(len(Y))]
    on_front = {str([float(x) for x in C[i]]) for i in range(len(Y)) if not dominated[i]}
    assert set(front) == on_front
    key = next(iter(front))
    direct = engine.evaluate_at(json.loads(key), PAIR)
    assert front[key] == [direct[d]["accuracy"] for d in PAIR]
    assert (grid_run / "pareto_front_grid.png").read_bytes()[:4] == b"\x89PNG"
    run = _read(grid_run / "run.json")
    assert run["summary"]["n_evaluations"] == PER_AXIS ** 2


def test_a_finished_grid_run_again_evaluates_nothing(grid_run, results, zoo_root, monkeypatch):
    from task_vectors.engine import MergeEngine

    counter = CountingEvaluate(MergeEngine.evaluate)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert _main(*_argv(zoo_root, results, "grid", "grid",
                        "--grid-points-per-axis", PER_AXIS)) == 0
    assert counter.calls == 0


# ------------------------------------------------------------------ truth
def test_truth_indicators_are_written_and_consistent(map_truth_run, grid_run):
    from src.indicators import hv_ratio

    names = "_".join(PAIR)
    scores = _read(map_truth_run / "indicators.json")
    assert scores["truth"] == str(grid_run)
    _, Y_grid = _scaling(grid_run / f"{names}scaling_results.json")
    _, Y_real = _scaling(map_truth_run / f"{names}pareto_front_real.json")
    reevaluated = scores["reevaluated"]
    # recomputed here from the stored files
    assert reevaluated["hv_ratio"] == pytest.approx(hv_ratio(Y_real, Y_grid, "max"), abs=1e-12)
    assert 0.5 < reevaluated["hv_ratio"] < 1.2
    for key in ("igd", "igd_plus", "gd", "preference_regret", "win_rate_vs_truth"):
        assert np.isfinite(reevaluated[key])
    assert (map_truth_run / "pareto_front_vs_grid.png").read_bytes()[:4] == b"\x89PNG"
    assert _read(map_truth_run / "run.json")["summary"]["indicators"] == scores


def test_reevaluate_all_evaluates_every_predicted_front_point(map_truth_run):
    names = "_".join(PAIR)
    front = _read(map_truth_run / f"{names}pareto_front.json")
    real = _read(map_truth_run / f"{names}pareto_front_real.json")
    assert len(real) == len(front)
    assert {str([e["models"][m] for m in PAIR]) for e in real.values()} == set(front)


def test_truth_of_other_models_is_refused_in_one_line(results, zoo_root, grid_run, capsys):
    rc = _main("--demo", "--zoo-dir", zoo_root, "--method", "map", "--zeroshot-merge-models",
               "LetterVal", "ShapeVal", "--results-path", results, "--exp-id", "wrong",
               "--truth", grid_run)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "its models are ['LetterVal', 'DigitVal']" in err[0]
    assert not (results / "wrong").exists()


def test_grid_of_many_tasks_needs_its_size(results, zoo_root, capsys):
    rc = _main("--demo", "--zoo-dir", zoo_root, "--method", "grid", "--zeroshot-merge-models",
               "LetterVal", "DigitVal", "ShapeVal", "SymbolVal", "--results-path", results,
               "--exp-id", "big")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "set --grid-points-per-axis" in err[0]


# ------------------------------------------------------------------ baselines
def test_baselines_are_stored_and_equal_an_independent_evaluation(map_truth_run, engine):
    from task_vectors.baselines import default_baselines

    stored = _read(map_truth_run / "baselines.json")
    expected = default_baselines(2, [1.0, 1.0], seed=0)
    assert {b.name for b in expected} < set(stored)  # plus the tuned TA
    assert any(name.startswith("TA, tuned") for name in stored)
    for b in expected:
        direct = engine.evaluate_theta(b.theta(engine.tau, engine.theta_pre), PAIR)
        assert stored[b.name]["evals"] == direct, b.name
        assert stored[b.name]["describe"] == json.loads(json.dumps(b.describe()))
    summary = _read(map_truth_run / "run.json")["summary"]["baselines"]
    assert set(summary) == set(stored)
    assert all(isinstance(v["dominated_by_map"], bool) for v in summary.values())
    assert (map_truth_run / "pareto_front_withbaselines.png").read_bytes()[:4] == b"\x89PNG"


def test_baselines_resume_without_evaluating_again(map_truth_run, results, zoo_root,
                                                   grid_run, monkeypatch):
    from task_vectors.engine import MergeEngine

    counter = CountingEvaluate(MergeEngine.evaluate)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert _main(*_argv(zoo_root, results, "map", "map", "--truth", grid_run,
                        "--reevaluate", "all", "--baselines")) == 0
    assert counter.calls == 0


def test_baselines_need_plain_task_vectors(results, zoo_root, capsys):
    rc = _main(*_argv(zoo_root, results, "dare-b", "map", "--baselines",
                      "--merge-method", "dare"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--merge-method ta" in err[0]


# ------------------------------------------------------------------ merge methods, compare
def test_a_dare_run_is_compared_in_the_baselines_figure(map_truth_run, results, zoo_root,
                                                        grid_run, engine):
    from task_vectors.merging import tau_transform

    assert _main(*_argv(zoo_root, results, "dare", "map", "--merge-method", "dare",
                        "--dare-drop-rate", "0.5", "--reevaluate", "2")) == 0
    run = _read(results / "dare" / "run.json")
    assert run["arguments"]["merge_method"] == "dare"
    # one stored merge equals theta_pre + sum c_i DARE(tau_i) evaluated here
    names = "_".join(PAIR)
    entry = _read(results / "dare" / f"{names}scaling_results.json")["4"]
    c = [entry["models"][m] for m in PAIR]
    tau = engine.tau.clone()
    tau_transform("dare", drop_rate=0.5, seed=0)(tau)
    theta = engine.theta_pre + torch_tensor(c) @ tau
    got = engine.evaluate_theta(theta, PAIR)
    for task in PAIR:  # the sum in another order: equal up to float rounding
        assert entry["evals"][task]["accuracy"] == got[task]["accuracy"]
        assert entry["evals"][task]["loss"] == pytest.approx(got[task]["loss"], rel=1e-6)
    # and it joins the other run's figure
    assert _main(*_argv(zoo_root, results, "map", "map", "--truth", grid_run,
                        "--reevaluate", "all", "--baselines", "--compare",
                        results / "dare")) == 0
    assert (results / "map" / "pareto_front_withbaselines.png").exists()


def test_resume_with_another_merge_method_is_refused(results, zoo_root, capsys):
    assert _main(*_argv(zoo_root, results, "switch", "map", "--reevaluate", "0")) == 0
    capsys.readouterr()
    rc = _main(*_argv(zoo_root, results, "switch", "map", "--reevaluate", "0",
                      "--merge-method", "ties"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "--merge-method ta, this run has ties" in err[0]


def torch_tensor(values):
    import torch

    return torch.tensor(values, dtype=torch.float32)
