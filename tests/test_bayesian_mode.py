"""--method bayesian on the demo zoo, end to end: the map-mode files plus the per-round
record and figure, exactly initial + iter x update evaluations, and resuming a killed run
without repeating a stored evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from src.core.bayesian import assign_bins, squared_errors
from src.core.surrogate import fit_surrogates
from helpers import FEW_IMAGES, CountingEvaluate, files_but_lock, no_loading

PAIR = ["LetterVal", "DigitVal"]
THREE = ["LetterVal", "DigitVal", "ShapeVal"]
N_GEN = "50"
REEVALUATE = "3"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEFAULT_SCHEDULE_2 = (8, 5, 3)  # (T+1)(T+2)/2 + 2 initial, 5 per round, 3 rounds
SCHEDULE_3 = (11, 4, 2)  # given on the command line
# the pair takes the default acquisition (args.default_bayes_acquisition: ehvi for 2 tasks),
# the triple the original's error bins, given on the command line
ACQUISITION = {2: "ehvi", 3: "error"}
DESIGN = {"ehvi": "lhs", "error": "grid"}  # round 0 by acquisition: args.default_bayes_design


pytestmark = pytest.mark.usefixtures("one_thread")  # the demo model is tiny


def _main(*argv) -> int:
    import run_MAP

    return run_MAP.main([str(a) for a in argv])


def _argv(zoo_root: str, results: Path, exp_id: str, models, *extra) -> list:
    return ["--demo", "--zoo-dir", zoo_root, "--method", "bayesian", "--n-gen", N_GEN,
            "--reevaluate", REEVALUATE, "--max-eval-samples", FEW_IMAGES, "--zeroshot-merge-models", *models,
            "--results-path", results, "--exp-id", exp_id, *extra]


def _schedule_flags(schedule) -> list[str]:
    initial, update, iterations = schedule
    return ["--bayes-initial-pts", str(initial), "--bayes-update-pts", str(update),
            "--bayes-iter", str(iterations)]


def _n_reference(run_dir: Path) -> int:
    """Reference models evaluated for the pick check (the pretrained model when the design
    lacks c = 0)."""
    path = run_dir / "reference_models.json"
    return len(_read(path)) if path.exists() else 0


def _read(path: Path):
    return json.loads(Path(path).read_text())


def _stored(path: Path, models) -> tuple[np.ndarray, np.ndarray]:
    data = _read(path)
    entries = [data[k] for k in sorted(data, key=int)]
    C = np.array([[e["models"][m] for m in models] for e in entries])
    Y = np.array([[e["evals"][d]["accuracy"] for d in models] for e in entries])
    return C, Y


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bayes_results")


def _counted_run(argv) -> tuple[int, int]:
    """(exit code, MergeEngine.evaluate calls) of one in-process run."""
    from task_vectors.engine import MergeEngine

    original = MergeEngine.evaluate
    counter = CountingEvaluate(original)
    MergeEngine.evaluate = counter
    try:
        rc = _main(*argv)
    finally:
        MergeEngine.evaluate = original
    return rc, counter.calls


@pytest.fixture(scope="module")
def runs(results, zoo_root) -> dict[int, tuple[Path, int, tuple[int, int, int]]]:
    """T -> (run directory, evaluate calls, schedule)."""
    out = {}
    rc, calls = _counted_run(_argv(zoo_root, results, "two", PAIR))
    assert rc == 0
    out[2] = (results / "two", calls, DEFAULT_SCHEDULE_2)
    rc, calls = _counted_run(_argv(zoo_root, results, "three", THREE,
                                   *_schedule_flags(SCHEDULE_3), "--bayes-acquisition",
                                   ACQUISITION[3]))
    assert rc == 0
    out[3] = (results / "three", calls, SCHEDULE_3)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("T", [2, 3])
def test_bayesian_writes_map_files_plus_rounds(runs, T):
    run_dir, _, (initial, update, iterations) = runs[T]
    models = PAIR if T == 2 else THREE
    names = "_".join(models)
    files = {f"{names}scaling_results.json", f"{names}_params.json", f"{names}_surrogates.json",
             f"{names}pareto_front.json", "pareto_front.png", "surrogate_fit.png", "run.json",
             "bayesian_rounds.json", "bayesian_rounds.png"}
    if T == 2:
        files.add("surrogate_contours.png")
    present = {p.name for p in run_dir.iterdir()}
    assert files <= present
    for png in (f for f in files if f.endswith(".png")):
        assert (run_dir / png).read_bytes()[:8] == PNG_MAGIC

    scaling = _read(run_dir / f"{names}scaling_results.json")
    assert all(set(e) == {"evals", "models"} and list(e["models"]) == models
               and all(set(v) == {"accuracy", "loss", "entropy"} for v in e["evals"].values())
               for e in scaling.values())
    front = _read(run_dir / f"{names}pareto_front.json")
    assert all(len(json.loads(k)) == T and len(v) == T for k, v in front.items())
    params = _read(run_dir / f"{names}_surrogates.json")
    assert set(params) == set(models) and all(p["link"] == "sigmoid" for p in params.values())

    run = _read(run_dir / "run.json")
    assert run["method"] == "bayesian"
    assert run["summary"]["schedule"] == {"design": DESIGN[ACQUISITION[T]], "initial": initial,
                                          "update": update,
                                          "iterations": iterations,
                                          "acquisition": ACQUISITION[T]}
    assert run["arguments"]["bayes_acquisition"] == ACQUISITION[T]
    written = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    assert {"final_model/finetuned.pt", "final_model/merge.json"} <= written
    assert written - {"run.json"} <= set(run["outputs"])


@pytest.mark.slow
@pytest.mark.parametrize("T", [2, 3])
def test_rounds_record_points_posterior_and_error(runs, T):
    run_dir, _, (initial, update, iterations) = runs[T]
    models = PAIR if T == 2 else THREE
    C, Y = _stored(run_dir / f"{'_'.join(models)}scaling_results.json", models)
    rounds = _read(run_dir / "bayesian_rounds.json")
    assert [r["round"] for r in rounds] == list(range(iterations + 1))
    assert [len(r["points"]) for r in rounds] == [initial] + [update] * iterations
    assert [r["n_points"] for r in rounds] == [initial + r * update
                                              for r in range(iterations + 1)]
    # The rounds' points, in order, are exactly the evaluated points, in order.
    np.testing.assert_allclose(np.concatenate([r["points"] for r in rounds]), C, atol=1e-12)
    n_bins = 4 ** (T - 1)  # 4 angular bins per angle for T < 4
    for r in rounds:
        posterior = np.array(r["bin_posterior"])
        assert posterior.shape == (n_bins,) and (posterior >= 0).all()
        assert posterior.sum() == pytest.approx(1.0)
    assert rounds[0]["surrogate_mse"] is None
    # Round r's error is that of the surrogates fitted on every point before it.
    for r in range(1, iterations + 1):
        n_before = initial + (r - 1) * update
        surrogates = fit_surrogates(C[:n_before], Y[:n_before], "sigmoid")
        expected = squared_errors(surrogates, C[:n_before], Y[:n_before]).mean()
        assert rounds[r]["surrogate_mse"] == pytest.approx(expected, rel=1e-6, abs=1e-12)
    # EHVI rounds propose every point (the front has room for 5 new ones); error rounds
    # propose none.
    assert [(r["acquisition"], r["proposed"]) for r in rounds[1:]] == \
        [(ACQUISITION[T], update if ACQUISITION[T] == "ehvi" else 0)] * iterations
    # The bins' points of a round come from the posterior it records, by systematic
    # resampling: bin b gets floor or ceil of n * p_b of them; and a bin the round scored
    # higher never gets less posterior (the acquisition is monotone in the bins' errors).
    for r in rounds[1:]:
        posterior = np.array(r["bin_posterior"])
        drawn = np.array(r["points"])[r["proposed"]:].reshape(-1, T)
        counts = np.bincount(assign_bins(drawn, 4), minlength=n_bins)
        expected = len(drawn) * posterior
        assert (counts >= np.floor(expected - 1e-9)).all(), (counts, expected)
        assert (counts <= np.ceil(expected + 1e-9)).all(), (counts, expected)
        scores = np.array(r["bin_scores"])
        higher = scores[:, None] > scores[None, :]
        assert (posterior[:, None] >= posterior[None, :] - 1e-12)[higher].all()


@pytest.mark.slow
@pytest.mark.parametrize("T", [2, 3])
def test_evaluations_are_initial_plus_iter_times_update(runs, T):
    run_dir, calls, (initial, update, iterations) = runs[T]
    names = "_".join(PAIR if T == 2 else THREE)
    n = initial + iterations * update
    assert len(_read(run_dir / f"{names}scaling_results.json")) == n
    n_real = len(_read(run_dir / f"{names}pareto_front_real.json"))
    assert 1 <= n_real <= int(REEVALUATE)
    assert calls == n + n_real + _n_reference(run_dir)
    assert _read(run_dir / "run.json")["summary"]["n_evaluations"] == n


@pytest.mark.slow
def test_killed_run_resumes_without_repeating_a_stored_evaluation(runs, results, zoo_root,
                                                                   monkeypatch, capsys):
    from task_vectors.engine import MergeEngine

    full_dir, _, (initial, update, iterations) = runs[2]
    names = "LetterVal_DigitVal"
    run_dir = results / "resume"
    argv = _argv(zoo_root, results, "resume", PAIR)
    original = MergeEngine.evaluate

    k = initial + 2  # killed in the middle of round 1
    monkeypatch.setattr(MergeEngine, "evaluate", CountingEvaluate(original, stop_after=k))
    assert _main(*argv) == 130
    assert "Traceback" not in capsys.readouterr().err
    assert len(_read(run_dir / f"{names}scaling_results.json")) == k

    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert _main(*argv) == 0
    n = initial + iterations * update
    n_real = len(_read(run_dir / f"{names}pareto_front_real.json"))
    assert counter.calls == (n - k) + n_real + _n_reference(run_dir)

    # The resumed run drew the same points as the uninterrupted one and found its front.
    C, _ = _stored(run_dir / f"{names}scaling_results.json", PAIR)
    C_full, _ = _stored(full_dir / f"{names}scaling_results.json", PAIR)
    np.testing.assert_array_equal(C, C_full)
    assert _read(run_dir / "bayesian_rounds.json") == _read(full_dir / "bayesian_rounds.json")
    assert _read(run_dir / f"{names}pareto_front.json") == \
        _read(full_dir / f"{names}pareto_front.json")

    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert _main(*argv) == 0
    assert counter.calls == 0


@pytest.mark.parametrize("models, expected", [
    (PAIR, "ehvi"), (THREE, "ehvi"), (THREE + ["ColorVal"], "ehvi"),
    (THREE + ["ColorVal", "TextureVal"], "error")])
def test_the_acquisition_in_force_follows_the_number_of_tasks(zoo_root, models, expected):
    """args.default_bayes_acquisition: EHVI rounds up to 4 tasks (where measured), the
    error bins beyond; a flag given wins and is recorded."""
    from args import DEFAULTS, parse_arguments
    from src.run.config import build_config

    def config(*extra):
        return build_config(parse_arguments(["--demo", "--zoo-dir", zoo_root, "--method",
                                             "bayesian", "--zeroshot-merge-models", *models,
                                             *extra]), DEFAULTS)
    assert config().bayes_acquisition == expected
    assert config().arguments["bayes_acquisition"] == expected
    other = "error" if expected == "ehvi" else "ehvi"
    assert config("--bayes-acquisition", other).bayes_acquisition == other


@pytest.mark.parametrize("T", [2, 3, 4, 5])
def test_the_first_round_design_follows_the_acquisition_unless_given(zoo_root, T, capsys):
    """--design sets bayesian's round 0 and is recorded. Its default
    (args.default_bayes_design): lhs before EHVI rounds (the default up to 4 tasks), grid,
    the original's, before the error rounds (from 5 tasks, or asked for). map's two-stage
    local design is refused in one line."""
    from args import DEFAULTS, parse_arguments
    from src.run.config import build_config

    models = (THREE + ["ColorVal", "TextureVal"])[:T]

    def config(*extra):
        return build_config(parse_arguments(["--demo", "--zoo-dir", zoo_root, "--method",
                                             "bayesian", "--zeroshot-merge-models", *models,
                                             *extra]), DEFAULTS)
    expected = "lhs" if T <= 4 else "grid"
    assert config().design == config().arguments["design"] == expected
    for acquisition in ("ehvi", "error"):
        assert config("--bayes-acquisition", acquisition).design == DESIGN[acquisition]
    other = "grid" if expected == "lhs" else "lhs"
    assert config("--design", other).design == config("--design", other).arguments["design"] \
        == other
    capsys.readouterr()
    assert _main("--demo", "--zoo-dir", zoo_root, "--method", "bayesian", "--design", "local",
                 "--zeroshot-merge-models", *models) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["run_MAP.py: error: --design local is map's two-stage design; bayesian's "
                   "first round is grid or lhs"], err


@pytest.mark.parametrize("method", ["nested", "grid", "adamerging"])
def test_design_is_refused_where_a_mode_has_its_own(method, run_cli, capsys):
    """Before, --design was ignored by these modes and run.json recorded design grid."""
    assert run_cli("--demo", "--method", method, "--design", "lhs") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"run_MAP.py: error: --design goes with --method map or bayesian "
                   f"(bayesian: its first round); --method {method} has its own design"], err


@pytest.mark.slow
@pytest.mark.parametrize("design", [None, "grid"])
def test_the_rounds_start_with_a_latin_hypercube_unless_grid_is_asked(zoo_root, tmp_path,
                                                                     design):
    """A pair's default first round is map's LHS design; --design grid gives the
    original's (one-hot models, plain task arithmetic, coarse-grid points)."""
    from src.core.sampling import design as grid_design, lhs_design

    argv = _argv(zoo_root, tmp_path, "r", PAIR, "--bayes-initial-pts", "8",
                 "--bayes-update-pts", "3", "--bayes-iter", "1", "--seed", "4",
                 *(["--design", design] if design else []))
    assert _main(*argv) == 0
    rounds = _read(tmp_path / "r" / "bayesian_rounds.json")
    expected = (lhs_design(2, 8, 0.0, 1.0, 4) if design is None else
                grid_design(2, 8, low=0.0, high=1.0, n_diagonal=1, n_disturbed=0, seed=4))
    np.testing.assert_allclose(rounds[0]["points"], expected, atol=1e-12)
    name = design or "lhs"
    assert _read(tmp_path / "r" / "bayesian_plan.json")["design"] == name
    run = _read(tmp_path / "r" / "run.json")
    assert run["summary"]["schedule"]["design"] == run["arguments"]["design"] == name


SMALL = ["--bayes-initial-pts", "8", "--bayes-update-pts", "3", "--bayes-iter", "2",
         "--refine-rounds", "1", "--refine-points", "3"]
N_ROUNDS = 8 + 2 * 3  # the rounds' points of SMALL; the refinement's follow them


@pytest.mark.slow
def test_runs_with_refinement_resume_and_grow_their_rounds(zoo_root, tmp_path, monkeypatch,
                                                          capsys):
    """The refinement's points are stored after the rounds'. A finished run rerun, a run
    killed inside its refinement, and a run given more rounds each take the stored round
    points as rounds and nothing else (before, the first two were refused: "more than this
    schedule's" points)."""
    from task_vectors.engine import MergeEngine

    names = "LetterVal_DigitVal"
    original = MergeEngine.evaluate
    full = _argv(zoo_root, tmp_path, "full", PAIR, *SMALL)
    assert _main(*full) == 0
    full_dir = tmp_path / "full"
    n_refined = sum(r["new_points"] for r in _read(full_dir / "refine_rounds.json"))
    assert n_refined > 0
    assert len(_read(full_dir / f"{names}scaling_results.json")) == N_ROUNDS + n_refined
    assert _read(full_dir / "bayesian_plan.json") == {
        "seed": 0, "design": "lhs", "initial": 8, "update": 3, "iterations": 2, "acquisition": "ehvi",
        "bounds": [0.0, 1.0], "search_bounds": [0.0, 1.0], "n_gen": int(N_GEN)}

    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert _main(*full) == 0  # the same command again
    assert counter.calls == 0

    killed = _argv(zoo_root, tmp_path, "killed", PAIR, *SMALL)
    monkeypatch.setattr(MergeEngine, "evaluate", CountingEvaluate(original,
                                                                  stop_after=N_ROUNDS + 1))
    assert _main(*killed) == 130  # in the refinement round
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.setattr(MergeEngine, "evaluate", original)
    assert _main(*killed) == 0
    for name in ("bayesian_rounds.json", "refine_rounds.json", f"{names}pareto_front.json"):
        assert _read(tmp_path / "killed" / name) == _read(full_dir / name), name
    np.testing.assert_array_equal(
        _stored(tmp_path / "killed" / f"{names}scaling_results.json", PAIR)[0],
        _stored(full_dir / f"{names}scaling_results.json", PAIR)[0])

    # one more round: the stored rounds are its first rounds, the refinement's points not
    before = _read(full_dir / "bayesian_rounds.json")
    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    grown = [str(a) for a in full]
    grown[grown.index("--bayes-iter") + 1] = "3"
    assert _main(*grown) == 0
    rounds = _read(full_dir / "bayesian_rounds.json")
    assert len(rounds) == 4 and rounds[:3] == before
    refined = {tuple(c) for r in _read(full_dir / "refine_rounds.json")
               for c in r["coefficients"]}
    assert not refined & {tuple(c) for c in rounds[3]["points"]}
    assert counter.calls >= 3


@pytest.mark.slow
def test_points_another_plan_or_mode_drew_are_refused_before_loading(zoo_root, tmp_path,
                                                                    monkeypatch, capsys):
    """A resume takes the stored points as its rounds' points: another --seed, schedule,
    acquisition or box, or a directory of another mode's points, is refused in one line
    before anything is loaded (before, a map run's points became bayesian's rounds)."""
    import src.modes.common as common

    argv = _argv(zoo_root, tmp_path, "b", PAIR, "--bayes-initial-pts", "8",
                 "--bayes-update-pts", "3", "--bayes-iter", "1")
    assert _main(*argv) == 0
    run_dir = tmp_path / "b"
    before = files_but_lock(run_dir)

    monkeypatch.setattr(common, "open_evaluator", no_loading)
    capsys.readouterr()
    for extra, said in ((["--seed", "2"], "--seed 0; this run asks for --seed 2"),
                        # the error rounds' default round 0 is grid: both named
                        (["--bayes-acquisition", "error"], "--design lhs, --bayes-acquisition "
                         "ehvi; this run asks for --design grid, --bayes-acquisition error"),
                        (["--bounds", "0", "0.9"], "--bounds 0 1, --search-bounds 0 1; this "
                         "run asks for --bounds 0 0.9, --search-bounds 0 0.9"),
                        (["--n-gen", "7"], f"--n-gen {N_GEN}; this run asks for --n-gen 7"),
                        (["--design", "grid"], "--design lhs; this run asks for --design grid")):
        assert _main(*argv, *extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"its rounds drew their points with {said}. Resume with " \
            "the same flags, or use another --exp-id" in err[0], (extra, err)
        assert files_but_lock(run_dir) == before
    # a plan recorded before --design applied to bayesian: its round 0 was the grid design,
    # so a resume with today's defaults (an LHS round 0) is refused, one with --design grid not
    plan = _read(run_dir / "bayesian_plan.json")
    del plan["design"]
    (run_dir / "bayesian_plan.json").write_text(json.dumps(plan))
    assert _main(*argv) == 2
    err = capsys.readouterr().err
    assert "--design grid; this run asks for --design lhs. Resume with the same flags" in err
    with pytest.raises(AssertionError, match="loaded the models"):  # past the plan check
        _main(*argv, "--design", "grid")
    monkeypatch.undo()

    mapped = ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--n-gen", N_GEN,
              "--max-eval-samples", FEW_IMAGES, "--zeroshot-merge-models", *PAIR,
              "--refine-rounds", "0", "--results-path", tmp_path, "--exp-id", "m"]
    assert _main(*mapped) == 0
    monkeypatch.setattr(common, "open_evaluator", no_loading)
    capsys.readouterr()
    assert _main(*_argv(zoo_root, tmp_path, "m", PAIR)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "points that no bayesian rounds drew (another --method's run?)" \
        in err[0]


@pytest.mark.parametrize("name, text, said", [
    ("bayesian_rounds.json", '{"round": 0}', "not bayesian rounds"),
    ("bayesian_rounds.json", '[{"points": [["a", 1]]}]', "not bayesian rounds"),
    ("bayesian_rounds.json", '[{"points": [[0.5]]}]', "not bayesian rounds"),
    ("refine_rounds.json", '[{"coefficients": [[0.5, "x"]]}]', "not front-refinement rounds"),
    ("bayesian_plan.json", '[1, 2]', "not a bayesian plan"),
    ("bayesian_plan.json", '{"iterations": "3"}', "not a bayesian plan"),
    ("bayesian_plan.json", '{"seed": ', "not valid JSON")])
def test_a_damaged_round_file_is_one_line_before_loading(name, text, said, zoo_root, tmp_path,
                                                         monkeypatch, capsys):
    import src.modes.common as common

    run_dir = tmp_path / "d"
    run_dir.mkdir()
    (run_dir / name).write_text(text)

    monkeypatch.setattr(common, "open_evaluator", no_loading)
    assert _main(*_argv(zoo_root, tmp_path, "d", PAIR)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{run_dir / name}: {said}" in err[0] and \
        "move it away to start afresh" in err[0]
