"""Front refinement (src.core.refine): on an analytic two-objective problem whose front a
quadratic fits poorly, refinement brings the predicted front closer to the real one and
never asks for a point already evaluated; on the demo pair, --refine-rounds stores its
points (a resume evaluates nothing) and records its rounds in run.json."""
from __future__ import annotations

import json

import numpy as np
import pytest

from src.core import refine, sampling
from helpers import FEW_IMAGES, CountingEvaluate

# Two peaks: objective k is best at P[k]; the real front is the segment between them.
P = np.array([[0.7, 0.3], [0.3, 0.7]])


def real(C: np.ndarray) -> np.ndarray:
    C = np.atleast_2d(C)
    dist = np.linalg.norm(C[:, None, :] - P[None], axis=2)  # [n, 2]
    return 0.95 - 0.6 * dist ** 1.5  # not a quadratic in logit space: the surrogate errs


SEARCH = refine.surrogate_search("sigmoid", ["max", "max"], low=0.0, high=1.0, n_gen=40,
                                 seed=0)


def front_error(C: np.ndarray, Y: np.ndarray) -> float:
    """Mean |predicted - real| over the whole predicted front of a fit on (C, Y)."""
    C_front, F_front = SEARCH(C, Y)
    return float(np.abs(F_front - real(C_front)).mean())


def test_refinement_reduces_the_predicted_vs_real_error_and_never_repeats_a_point():
    C0 = sampling.design(2, 12, n_diagonal=1, seed=0)
    Y0 = real(C0)
    asked: list[np.ndarray] = []

    def evaluate(C_new: np.ndarray) -> np.ndarray:
        done = np.vstack([C0, *asked]) if asked else C0
        gaps = np.linalg.norm(C_new[:, None] - done[None], axis=2).min(axis=1)
        assert (gaps > refine.MIN_DISTANCE).all(), "an evaluated point was asked for again"
        pairwise = np.linalg.norm(C_new[:, None] - C_new[None], axis=2)
        assert (pairwise[np.triu_indices(len(C_new), 1)] > refine.MIN_DISTANCE).all()
        asked.append(C_new)
        return real(C_new)

    result = refine.refine_front(evaluate, SEARCH, C0, Y0, rounds=3, points=5)
    assert len(result.rounds) == 3 and result.stopped == "rounds"
    assert [r["new_points"] for r in result.rounds] == [len(a) for a in asked]
    assert len(result.C) == len(C0) + sum(len(a) for a in asked)
    np.testing.assert_array_equal(result.C[: len(C0)], C0)
    np.testing.assert_allclose(result.Y, real(result.C))
    before, after = front_error(C0, Y0), front_error(result.C, result.Y)
    assert after < 0.8 * before, (before, after)
    errors = [r["mean_abs_error"] for r in result.rounds]
    assert errors[-1] < errors[0], errors
    # the new points lie on the real front's side of the box: between the two peaks
    new = np.vstack(asked)
    assert np.abs(new.sum(axis=1) - 1.0).mean() < np.abs(C0.sum(axis=1) - 1.0).mean()


def test_refinement_stops_at_the_tolerance_and_when_the_front_offers_nothing_new():
    C0 = sampling.design(2, 12, n_diagonal=1, seed=0)
    loose = refine.refine_front(real, SEARCH, C0, real(C0), rounds=5, points=3, tol=1.0)
    assert len(loose.rounds) == 1 and loose.converged and loose.stopped == "tol"

    def front_only(C, Y):  # a front of already-evaluated points only
        return C[:2], Y[:2]

    def never(C_new):
        raise AssertionError("nothing new should be evaluated")

    stuck = refine.refine_front(never, front_only, C0, real(C0), rounds=3, points=3)
    assert stuck.rounds == [] and stuck.stopped == "no new points"
    off = refine.refine_front(never, SEARCH, C0, real(C0), rounds=0, points=3)
    assert off.rounds == [] and len(off.C) == len(C0)


def test_new_front_points_are_spread_and_away_from_the_data():
    t = np.linspace(0, 1, 101)
    C_front = np.column_stack([t, 1 - t])
    F_front = np.column_stack([t, 1 - t])
    rows = refine.new_front_points(C_front, F_front, np.array([[0.0, 1.0], [1.0, 0.0]]), 3,
                                   0.05)
    # the largest gap first (the middle), then the two ends of what is left
    assert rows[0] == 50 and sorted(np.round(t[rows], 2).tolist()) == [0.04, 0.5, 0.96]
    assert len(refine.new_front_points(C_front, F_front, C_front, 3, 0.05)) == 0


# ------------------------------------------------------------------ CLI on the demo pair
PAIR = ["LetterVal", "DigitVal"]


@pytest.mark.slow
def test_cli_refine_rounds_store_their_points_and_record_the_rounds(zoo_root, tmp_path,
                                                                    monkeypatch, one_thread):
    import run_MAP
    from task_vectors.engine import MergeEngine

    argv = ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--n-gen", "40",
            "--reevaluate", "2", "--max-eval-samples", str(FEW_IMAGES),
            "--zeroshot-merge-models", *PAIR, "--results-path",
            str(tmp_path), "--exp-id", "refined", "--refine-rounds", "2",
            "--refine-points", "3", "--design", "grid", "--refine-acquisition", "spread"]
    original = MergeEngine.evaluate
    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert run_MAP.main(argv) == 0
    run_dir = tmp_path / "refined"
    summary = json.loads((run_dir / "run.json").read_text())["summary"]
    rounds = summary["refine"]
    assert len(rounds["rounds"]) == 2 and rounds["points_per_round"] == [
        len(r["coefficients"]) for r in rounds["rounds"]]
    assert all(0 < n <= 3 for n in rounds["points_per_round"])
    assert len(rounds["agreement"]) == 2
    stored = json.loads((run_dir / "LetterVal_DigitVal" "scaling_results.json").read_text())
    n_refined = sum(rounds["points_per_round"])
    assert len(stored) == 12 + n_refined == summary["n_evaluations"]
    stored_C = {tuple(np.round([e["models"][m] for m in PAIR], 6)) for e in stored.values()}
    for r in rounds["rounds"]:
        for c in r["coefficients"]:
            assert tuple(np.round(c, 6)) in stored_C
    assert json.loads((run_dir / "refine_rounds.json").read_text()) == rounds["rounds"]
    # + the pretrained model, evaluated once for the pick check
    assert counter.calls == 12 + n_refined + len(summary["reevaluated"]["real"]) + 1

    # a resume asks for the same points: every one is stored, nothing is evaluated
    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert run_MAP.main(argv) == 0
    assert counter.calls == 0
    again = json.loads((run_dir / "run.json").read_text())["summary"]["refine"]
    assert again["points_per_round"] == rounds["points_per_round"]


def test_refine_flags_are_checked(zoo_root, tmp_path, capsys):
    import run_MAP

    code = run_MAP.main(["--demo", "--zoo-dir", zoo_root, "--method", "nested",
                         "--refine-rounds", "2", "--results-path", str(tmp_path)])
    assert code == 2 and "--refine-rounds" in capsys.readouterr().err


@pytest.mark.slow
def test_bayesian_refines_after_its_rounds(zoo_root, tmp_path, one_thread):
    import run_MAP

    argv = ["--demo", "--zoo-dir", zoo_root, "--method", "bayesian", "--n-gen", "30",
            "--reevaluate", "0", "--max-eval-samples", str(FEW_IMAGES),
            "--zeroshot-merge-models", *PAIR, "--results-path",
            str(tmp_path), "--exp-id", "bayes", "--bayes-iter", "1", "--refine-rounds", "1",
            "--refine-points", "2"]
    assert run_MAP.main(argv) == 0
    summary = json.loads((tmp_path / "bayes" / "run.json").read_text())["summary"]
    rounds = json.loads((tmp_path / "bayes" / "bayesian_rounds.json").read_text())
    refine_points = summary["refine"]["points_per_round"]
    assert len(refine_points) == 1 and 0 < refine_points[0] <= 2
    # round 0 and the one --bayes-iter round ran first; refinement's points come after them
    assert [r["round"] for r in rounds] == [0, 1]
    bayes_points = np.concatenate([r["points"] for r in rounds])
    assert summary["n_evaluations"] == summary["refine"]["n_evaluations"] == \
        len(bayes_points) + refine_points[0]
    stored = json.loads((tmp_path / "bayes" / f"{'_'.join(PAIR)}scaling_results.json").read_text())
    C = np.array([[stored[k]["models"][m] for m in PAIR] for k in sorted(stored, key=int)])
    np.testing.assert_allclose(C[: len(bayes_points)], bayes_points, atol=1e-12)


def test_lhs_design_has_the_one_hot_models_and_one_point_per_stratum():
    from src.core.sampling import lhs_design

    C = lhs_design(3, 20, 0.0, 2.0, seed=1)
    assert C.shape == (20, 3) and len(np.unique(C, axis=0)) == 20
    np.testing.assert_array_equal(C[:3], np.eye(3))
    np.testing.assert_array_equal(C[3], [1.0, 1.0, 1.0])
    rest = C[4:]
    assert (rest >= 0).all() and (rest <= 2).all()
    for k in range(3):  # a Latin hypercube: one point in each of the 16 slices per axis
        assert sorted(np.floor(rest[:, k] / 2 * 16).astype(int).tolist()) == list(range(16))
    np.testing.assert_array_equal(C, lhs_design(3, 20, 0.0, 2.0, seed=1))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ehvi", "parego"])
def test_the_acquisition_chooses_the_refinement_points(zoo_root, tmp_path, monkeypatch,
                                                       one_thread, kind):
    """--refine-acquisition ehvi / parego: the rounds evaluate exactly the rows its selector
    returned (a run that ignored the flag would spread them along the front instead);
    parego's selector gets the run's preference."""
    import run_MAP
    from src.core import acquisition

    chosen, preferences = [], []
    real_selector = getattr(acquisition, f"{kind}_selector")

    def recording_selector(*args, **kwargs):
        preferences.append(kwargs.get("preference"))
        select = real_selector(*args, **kwargs)

        def wrapped(C_front, F_front, C_done, Y_done, k):
            rows = select(C_front, F_front, C_done, Y_done, k)
            chosen.append(np.asarray(C_front)[rows])
            return rows
        return wrapped

    monkeypatch.setattr(acquisition, f"{kind}_selector", recording_selector)
    weights = tmp_path / "weights.yaml"
    weights.write_text(f"{PAIR[0]}: 3\n{PAIR[1]}: 1\n")
    argv = ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--n-gen", "30",
            "--reevaluate", "2", "--zeroshot-merge-models", *PAIR, "--results-path",
            str(tmp_path), "--exp-id", kind, "--refine-rounds", "2", "--refine-points", "2",
            "--refine-acquisition", kind, "--max-eval-samples", "200", "--preference",
            str(weights)]
    assert run_MAP.main(argv) == 0
    rounds = json.loads((tmp_path / kind / "run.json").read_text())["summary"]["refine"]
    assert len(chosen) == len(rounds["rounds"]) >= 1
    if kind == "parego":
        w = np.asarray(preferences[0], dtype=float)
        assert w[0] == pytest.approx(3 * w[1])
    for picked, record in zip(chosen, rounds["rounds"]):
        assert np.allclose(picked, np.array(record["coefficients"]))


def test_ehvi_acquisition_without_rounds_is_refused(zoo_root, tmp_path, capsys):
    """An explicit --refine-acquisition ehvi with the rounds at 0: given (a pair), or by
    default (4 tasks)."""
    import run_MAP

    four = ["--zeroshot-merge-models", "LetterVal", "DigitVal", "ShapeVal", "ColorVal"]
    for extra in (["--refine-rounds", "0"], four):
        code = run_MAP.main(["--demo", "--zoo-dir", zoo_root, "--method", "map",
                             "--refine-acquisition", "ehvi", "--results-path", str(tmp_path),
                             *extra])
        err = capsys.readouterr().err
        assert code == 2 and "--refine-rounds" in err and len(err.strip().splitlines()) == 1
        assert not any(tmp_path.iterdir())
