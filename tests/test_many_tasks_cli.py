"""--method map on 4 demo tasks with --baselines, end to end: the many-task front figures and
run.json's pick_check block, checked against the run's own files and an independent engine."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import FEW_IMAGES, CountingEvaluate
from src.core.pick_check import EQUAL_RELATIVE, EQUAL_SPREAD

pytestmark = pytest.mark.usefixtures("one_thread")  # the demo model is tiny


def _read(path: Path):
    return json.loads(Path(path).read_text())


def _rows(path: Path, models, metric="accuracy") -> tuple[np.ndarray, np.ndarray]:
    data = _read(path)
    C = np.array([[e["models"][m] for m in models] for e in data.values()], dtype=float)
    Y = np.array([[e["evals"][d][metric] for d in models] for e in data.values()])
    return C, Y


@pytest.fixture(scope="module")
def four(demo_zoo) -> list[str]:
    return demo_zoo.tasks[:4]


@pytest.fixture(scope="module")
def argv(tmp_path_factory, zoo_root, four) -> list[str]:
    results = tmp_path_factory.mktemp("many_tasks")
    # --point 29: the least the default (local) design takes at 4 tasks
    return ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--point", "29",
            "--n-gen", "30", "--reevaluate", "3", "--pdf", "--baselines",
            "--no-adamerging-baselines",  # test_adamerging_mode covers those points
            "--max-eval-samples", str(FEW_IMAGES),
            "--zeroshot-merge-models", *four,
            "--results-path", str(results), "--exp-id", "four"]


@pytest.fixture(scope="module")
def run(argv) -> tuple[Path, str]:
    import contextlib
    import io

    import run_MAP

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_MAP.main(argv) == 0
    return Path(argv[argv.index("--results-path") + 1]) / "four", out.getvalue()


def test_four_tasks_draw_the_matrix_and_the_parallel_coordinates(run):
    run_dir, _ = run
    info = _read(run_dir / "run.json")
    for name in ("pareto_front.png", "pareto_front_parallel.png"):
        for path in (run_dir / name, (run_dir / name).with_suffix(".pdf")):
            assert 10_000 < path.stat().st_size < 5_000_000
            assert str(path) in info["summary"]["figures"]
        assert name in info["outputs"]
    head = (run_dir / "pareto_front.png").read_bytes()[:24]
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert width == height <= 8 * 300  # one square page, not a column of 6 panels


def test_pick_check_block_matches_the_run_files_and_an_independent_engine(run, four,
                                                                          demo_zoo):
    from task_vectors.engine import MergeEngine

    run_dir, printed = run
    summary = _read(run_dir / "run.json")["summary"]
    check = summary["pick_check"]
    names = "_".join(four)

    # the pretrained model, evaluated once and stored, is the engine's c = 0
    C_ref, Y_ref = _rows(run_dir / "reference_models.json", four)
    np.testing.assert_array_equal(C_ref, np.zeros((1, 4)))
    zoo = demo_zoo.path
    engine = MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zoo / "zeroshot.pt"),
        finetuned={m: str(zoo / m / "finetuned.pt") for m in four},
        heads={d: str(zoo / f"head_{d}.pt") for d in four}, datasets=four,
        data_location=str(zoo), batch_size=128, max_eval_samples=FEW_IMAGES)
    direct = engine.evaluate_at(np.zeros(4), four)
    pre = np.array([check["pretrained"]["real"][d] for d in four])
    np.testing.assert_allclose(pre, [direct[d]["accuracy"] for d in four], rtol=1e-6)
    np.testing.assert_allclose(pre, Y_ref[0])

    # the pick is the summary's re-evaluated pick
    assert check["pick"]["real"] == summary["chosen"]["real"]
    assert check["pick"]["coefficients"] == summary["chosen"]["coefficients"]
    pick = np.array([check["pick"]["real"][d] for d in four])

    # below the pretrained model: exactly the tasks where the pick's accuracy is lower
    below = {d: pre[k] - pick[k] for k, d in enumerate(four) if pick[k] < pre[k] - 1e-9}
    C, Y = _rows(run_dir / f"{names}scaling_results.json", four)
    C_f, Y_f = _rows(run_dir / f"{names}pareto_front_real.json", four)
    ta_baselines = [e for e in _read(run_dir / "baselines.json").values()
                    if e["describe"]["method"] == "task_arithmetic"]
    assert ta_baselines  # --baselines: the TA lambda sweep is among the candidates
    C_b = np.array([e["describe"]["coefficients"] for e in ta_baselines])
    Y_b = np.array([[e["evals"][d]["accuracy"] for d in four] for e in ta_baselines])
    C_all, Y_all = np.vstack([C, C_f, C_b]), np.vstack([Y, Y_f, Y_b])
    keeps = np.all(Y_all >= pre - 1e-9, axis=1) & (np.abs(C_all).max(axis=1) > 0)
    if not below:
        assert check["below_pretrained"] is None
    else:
        assert check["below_pretrained"]["tasks"] == pytest.approx(below)
        better = check["below_pretrained"]["better"]
        if keeps.any():
            best = Y_all[keeps].mean(axis=1).max()
            assert better["mean"] == pytest.approx(best)
        else:
            assert better is None

    # TA: the best evaluated near-equal merge by mean accuracy
    spread, mean_c = np.ptp(C_all, axis=1), C_all.mean(axis=1)
    equal = (spread <= EQUAL_SPREAD) & (spread <= EQUAL_RELATIVE * mean_c) & (mean_c > 0)
    assert equal.any()  # the design's near-diagonal points and the TA sweep
    ta = check["task_arithmetic"]
    assert ta["mean"] == pytest.approx(Y_all[equal].mean(axis=1).max())
    gaps = {"mean": ta["mean"] - pick.mean(), "worst task": ta["worst"] - pick.min()}
    expected = {k: v for k, v in gaps.items() if v > 1e-9}
    assert (check["below_task_arithmetic"] or {}) == pytest.approx(expected)
    # below TA: the evaluated merge at or above TA on both measures (best worst task), if any
    d_mean = Y_all.mean(axis=1) - ta["mean"]
    d_worst = Y_all.min(axis=1) - ta["worst"]
    above = ((d_mean >= -1e-9) & (d_worst >= -1e-9) & ((d_mean > 1e-9) | (d_worst > 1e-9))
             & (np.abs(C_all).max(axis=1) > 0))
    if expected and above.any():
        assert check["above_task_arithmetic"]["worst"] == pytest.approx(
            Y_all[above].min(axis=1).max())
    else:
        assert check["above_task_arithmetic"] is None

    # one printed line per finding, and a finding for each block that fired
    assert len(check["messages"]) == (check["below_pretrained"] is not None) + bool(expected)
    for line in check["messages"]:
        assert line in printed.splitlines()


def test_a_resumed_run_reads_the_pretrained_model_back(run, argv, monkeypatch):
    import run_MAP
    from task_vectors.engine import MergeEngine

    run_dir, _ = run
    before = _read(run_dir / "run.json")["summary"]["pick_check"]
    counter = CountingEvaluate(MergeEngine.evaluate)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert run_MAP.main(argv) == 0
    assert counter.calls == 0
    assert _read(run_dir / "run.json")["summary"]["pick_check"] == before


def test_local_design_run_sweeps_ta_then_fits_and_searches_its_box(run, four):
    """The module's run has map's 4-task default design (src.core.local_design)."""
    from src.core import local_design as ld

    run_dir, _ = run
    T, names = len(four), "_".join(four)
    info = _read(run_dir / "run.json")
    summary, design = info["summary"], info["summary"]["design"]
    assert info["arguments"]["design"] == "local"
    C, Y = _rows(run_dir / f"{names}scaling_results.json", four)
    points = 29
    assert len(C) == points == design["points"] == summary["n_evaluations"]
    for row in ld.stage_one(T, 0.0, 1.0):  # stage one is stored: fine-tuned models, sweep
        assert np.any(np.all(np.isclose(C, row), axis=1)), row
    lam = ld.best_lambda(C, Y, [1] * T, "max")  # the box: around the stored sweep's best
    assert design["ta_lambda"] == pytest.approx(lam)
    assert design["box"] == pytest.approx(list(ld.box_around(lam, 0.0, 1.0)))
    box = tuple(design["box"])
    in_box_sweep = sum(box[0] - 1e-9 <= k / 10 <= box[1] + 1e-9 for k in range(1, 11))
    assert design["fitted"] == int(ld.inside(C, box).sum()) == points - T - 10 + in_box_sweep
    front = _read(run_dir / f"{names}pareto_front.json")
    C_front = np.array([json.loads(k) for k in front], dtype=float)
    assert ld.inside(C_front, box).all()  # NSGA-III (and the floored GA) searched the box
    sweep = np.all(np.isclose(C, C[:, :1]), axis=1) & (C[:, 0] > 0)
    ta = summary["pick_check"]["task_arithmetic"]
    assert ta["mean"] >= Y[sweep].mean(axis=1).max() - 1e-12  # the sweep's best, or better


def test_the_default_pick_floor_hands_over_a_model_at_or_above_ta(run):
    """--pick-floor task-arithmetic, map's 4-task default: the model handed over is at or
    above the TA the pick check compares with, on the mean and the worst task."""
    from src.run.outputs import floor_line

    run_dir, printed = run
    info = _read(run_dir / "run.json")
    assert info["arguments"]["pick_floor"] == "task-arithmetic"
    assert floor_line(info["summary"]) in printed.splitlines()  # said on the terminal
    chosen, check = info["summary"]["chosen"], info["summary"]["pick_check"]
    ta = check["task_arithmetic"]
    assert chosen["floor"]["task_arithmetic"] == pytest.approx(
        {"mean": ta["mean"], "worst": ta["worst"]})
    assert chosen["at_or_above_floor"] is True
    assert check["pick"]["mean"] >= ta["mean"] - 1e-12
    assert check["pick"]["worst"] >= ta["worst"] - 1e-12
    assert check["below_task_arithmetic"] is None
    if chosen["floor"]["front_point_added"]:  # the floored search's point is the front pick
        assert chosen["floor"]["front_pick_predicted_at_or_above"] is True


def test_a_local_design_run_killed_in_its_second_stage_resumes_to_the_same_points(
        run, argv, four, monkeypatch, capsys):
    """Ctrl-C after 20 of the 29 merges (the second stage under way), then the same command:
    the stored first stage decides the same box, and the run ends with the module run's
    points, values and front."""
    import run_MAP
    from task_vectors.engine import MergeEngine

    run_dir, _ = run
    names = "_".join(four)
    quick = [a for a in argv if a not in ("--baselines", "--no-adamerging-baselines", "--pdf")]
    quick[quick.index("--exp-id") + 1] = "killed"
    killed = run_dir.parent / "killed"
    original = MergeEngine.evaluate
    monkeypatch.setattr(MergeEngine, "evaluate", CountingEvaluate(original, stop_after=20))
    assert run_MAP.main(quick) == 130
    assert len(_read(killed / f"{names}scaling_results.json")) == 20
    capsys.readouterr()
    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert run_MAP.main(quick) == 0
    assert "resumed: 20 points stored, 9 to evaluate" in capsys.readouterr().out
    for name in ("scaling_results.json", "pareto_front.json"):
        assert (killed / f"{names}{name}").read_bytes() == \
            (run_dir / f"{names}{name}").read_bytes(), name
    assert _read(killed / "run.json")["summary"]["design"] == \
        _read(run_dir / "run.json")["summary"]["design"]
