"""--method grid, --truth, --reevaluate all, --baselines, --compare and --merge-method from
the CLI on the demo zoo: the files, their numbers against an independent engine, resume,
and one-line refusals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import FEW_IMAGES, PLAIN_MAP, CountingEvaluate, zoo_engine

PAIR = ["LetterVal", "DigitVal"]
PER_AXIS = 6  # 36 grid merges: enough for a front, quick on 2 cores

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def _main(*argv) -> int:
    import run_MAP

    return run_MAP.main([str(a) for a in argv])


def _read(path: Path):
    return json.loads(Path(path).read_text())


def _argv(zoo_root, results, exp_id, method, *extra) -> list:
    # a short AdaMerging for the --baselines runs (test_adamerging_mode checks its points)
    return ["--demo", "--zoo-dir", zoo_root, "--method", method, "--n-gen", 40,
            "--zeroshot-merge-models", *PAIR, "--results-path", results, "--exp-id", exp_id,
            "--adamerging-steps", 20, "--max-eval-samples", FEW_IMAGES,
            *(PLAIN_MAP if method == "map" else []), *extra]


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
    return zoo_engine(demo_zoo, PAIR, max_eval_samples=FEW_IMAGES)


def _scaling(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = _read(path)
    entries = [data[k] for k in sorted(data, key=int)]
    C = np.array([[e["models"][m] for m in PAIR] for e in entries])
    Y = np.array([[e["evals"][d]["accuracy"] for d in PAIR] for e in entries])
    return C, Y


# Independent of src.core.indicators and pymoo: the indicators by their definitions, for two
# maximised objectives.
def _front(Y: np.ndarray) -> np.ndarray:
    keep = [not any((Y[j] >= Y[i]).all() and (Y[j] > Y[i]).any() for j in range(len(Y)))
            for i in range(len(Y))]
    return Y[keep]


def _hv2(F: np.ndarray, ref: np.ndarray) -> float:
    """Area of the union of the boxes [ref, p]: sweep by the first objective, descending."""
    area, top = 0.0, ref[1]
    for x, y in sorted((tuple(p) for p in F if (p > ref).all()), key=lambda p: -p[0]):
        if y > top:
            area, top = area + (x - ref[0]) * (y - top), y
    return area


def _igd_plus(F: np.ndarray, truth_front: np.ndarray) -> float:
    """Mean over truth-front points z of min over p of ||max(z - p, 0)||."""
    return float(np.mean([min(np.linalg.norm(np.maximum(z - p, 0.0)) for p in F)
                          for z in truth_front]))


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
    # keys at the grid's precision (0.6, not 0.6000000000000001)
    on_front = {str([round(float(x), 9) + 0.0 for x in C[i]]) for i in range(len(Y))
                if not dominated[i]}
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
    names = "_".join(PAIR)
    scores = _read(map_truth_run / "indicators.json")
    assert scores["truth"] == str(grid_run)
    _, Y_grid = _scaling(grid_run / f"{names}scaling_results.json")
    _, Y_real = _scaling(map_truth_run / f"{names}pareto_front_real.json")
    _, Y_sampled = _scaling(map_truth_run / f"{names}scaling_results.json")
    run = _read(map_truth_run / "run.json")
    # recomputed here from the stored files, by the definitions (not src.core.indicators):
    # reference = the grid front's nadir - 0.01
    truth_front = _front(Y_grid)
    ref = truth_front.min(axis=0) - 0.01
    hv_truth = _hv2(truth_front, ref)
    reevaluated, both = scores["reevaluated"], scores["reevaluated_and_sampled"]
    for block, F in ((reevaluated, Y_real), (both, np.vstack([Y_real, Y_sampled]))):
        assert block["reference_point"] == pytest.approx(ref.tolist(), abs=1e-12)
        assert block["hv_truth"] == pytest.approx(hv_truth, rel=1e-9)
        assert block["n_truth_front"] == len(np.unique(truth_front, axis=0))
        assert block["n_real_front"] == len(np.unique(_front(F), axis=0))
        assert block["hv_ratio"] == pytest.approx(_hv2(_front(F), ref) / hv_truth, rel=1e-9)
        assert block["igd_plus"] == pytest.approx(_igd_plus(_front(F), truth_front), rel=1e-9)
    # every sampled merge can only add to the re-evaluated front
    assert both["hv_ratio"] >= reevaluated["hv_ratio"] - 1e-12
    # the regret of the chosen model: the grid's best weighted accuracy minus its own
    w = np.array(reevaluated["weights"]) / np.sum(reevaluated["weights"])
    chosen = np.array([run["summary"]["chosen"]["real"][d] for d in PAIR])
    assert reevaluated["preference_regret"] == pytest.approx(
        float((Y_grid @ w).max() - chosen @ w), abs=1e-12)
    # predicted vs real at the re-evaluated points, matched by their coefficients
    front = _read(map_truth_run / f"{names}pareto_front.json")
    real = _read(map_truth_run / f"{names}pareto_front_real.json")
    errors = [np.abs(np.array(front[str([e["models"][m] for m in PAIR])]) -
                     [e["evals"][d]["accuracy"] for d in PAIR]) for e in real.values()]
    assert reevaluated["predicted_vs_real_mae"] == pytest.approx(np.mean(errors), rel=1e-9)
    assert (map_truth_run / "pareto_front_vs_grid.png").read_bytes()[:4] == b"\x89PNG"
    assert run["summary"]["indicators"] == scores


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
    # against MAP's real front (re-evaluated points and sampled merges), by definition: a
    # baseline b is dominated when a front point is >= b everywhere and > b somewhere; its
    # distance behind the front is min over front points f of ||max(f - b, 0)||
    names = "_".join(PAIR)
    _, Y_real = _scaling(map_truth_run / f"{names}pareto_front_real.json")
    _, Y_sampled = _scaling(map_truth_run / f"{names}scaling_results.json")
    front = _front(np.vstack([Y_real, Y_sampled]))
    for name, entry in summary.items():
        b = np.array([stored[name]["evals"][d]["accuracy"] for d in PAIR])
        assert entry["metrics"] == {d: stored[name]["evals"][d]["accuracy"] for d in PAIR}
        dominated = any((f >= b).all() and (f > b).any() for f in front)
        assert entry["dominated_by_map"] is dominated, name
        distance = min(np.linalg.norm(np.maximum(f - b, 0.0)) for f in front)
        assert entry["distance_to_map_front"] == pytest.approx(distance, abs=1e-12), name
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
    # and it joins the other run's figure: the figure drawn holds the DARE run's predicted
    # front and real points beside this run's
    import src.plotting.comparison as comparison

    drawn = []  # per figure drawn: {label: data} of its first panel (saving clears it)
    real_figure = comparison.comparison_figure

    def keep(*args, **kwargs):
        fig = real_figure(*args, **kwargs)
        ax = fig.axes[0]
        drawn.append({line.get_label(): np.asarray(line.get_xydata()) for line in ax.get_lines()}
                     | {c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections})
        return fig

    comparison.comparison_figure = keep
    try:
        assert _main(*_argv(zoo_root, results, "map", "map", "--truth", grid_run,
                            "--reevaluate", "all", "--baselines", "--compare",
                            results / "dare")) == 0
    finally:
        comparison.comparison_figure = real_figure
    assert (results / "map" / "pareto_front_withbaselines.png").read_bytes()[:4] == b"\x89PNG"
    # the grid figure is drawn too; the compared run joins the baselines figure only
    (series,) = [d for d in drawn if "MAP (DARE), predicted" in d]
    for label, run_dir in (("MAP (DARE)", results / "dare"), ("MAP (TA)", results / "map")):
        predicted = np.array(list(_read(run_dir / f"{names}pareto_front.json").values()))
        np.testing.assert_allclose(series[f"{label}, predicted"],
                                   predicted[np.argsort(predicted[:, 0], kind="stable")])
        _, real = _scaling(run_dir / f"{names}pareto_front_real.json")
        np.testing.assert_allclose(np.sort(series[f"{label}, real"], axis=0),
                                   np.sort(real, axis=0))
    _, Y_grid = _scaling(grid_run / f"{names}scaling_results.json")
    np.testing.assert_allclose(np.sort(series["grid points"], axis=0), np.sort(Y_grid, axis=0))


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
