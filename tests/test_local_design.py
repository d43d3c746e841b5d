"""map's local design (src.core.local_design): TA's sweep, then a box around its best λ, where
the surrogates are fitted and the front searched."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import FEW_IMAGES
from src.core import local_design as ld
from src.core.sampling import min_points

FOUR = ["LetterVal", "DigitVal", "ShapeVal", "SymbolVal"]


def _bowl(C: np.ndarray, centre: float = 0.3) -> np.ndarray:
    """Accuracy-like values [n, 2 + T]: every task peaks on the diagonal at c = centre·1,
    task k also gains from its own coefficient (so the one-hot models are its best)."""
    C = np.atleast_2d(C)
    base = 0.8 - 0.5 * ((C - centre) ** 2).sum(axis=1, keepdims=True)
    return np.clip(base + 0.05 * C, 0.01, 0.99)


def test_stage_one_is_the_fine_tuned_models_then_the_diagonal_sweep():
    C = ld.stage_one(3, 0.0, 1.0)
    assert C.shape == (3 + ld.DIAGONAL_STEPS, 3)
    np.testing.assert_array_equal(C[:3], np.eye(3))
    np.testing.assert_allclose(C[3:, 0], np.arange(1, 11) / 10)
    assert np.all(C[3:] == C[3:, :1])  # equal coefficients
    # a box that excludes 1 clips the fine-tuned models into it, the sweep spans the box
    C = ld.stage_one(2, 0.0, 0.5)
    assert C.max() == 0.5 and np.isclose(C[2:, 0].max(), 0.5)


def test_best_lambda_by_the_weighted_mean_and_the_sense():
    C = np.vstack([np.eye(2), [[0.2, 0.2], [0.4, 0.4], [0.6, 0.6]], [[0.1, 0.9]]])
    Y = np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.6], [0.7, 0.5], [0.6, 0.7], [0.99, 0.99]])
    # (0.1, 0.9) is best of all but not on the diagonal; (0.4) and (0.6) tie on the mean
    assert ld.best_lambda(C, Y, [1, 1], "max") == 0.6
    assert ld.best_lambda(C, Y, [3, 1], "max") == 0.4   # the first task weighs more
    assert ld.best_lambda(C, Y, [1, 1], "min") == 0.2   # a loss: smallest is best
    with pytest.raises(ValueError, match="diagonal"):
        ld.best_lambda(np.eye(2), Y[:2], [1, 1], "max")


def test_box_around_lambda_is_clipped_and_at_least_one_step_wide():
    assert ld.box_around(0.3, 0.0, 1.0) == pytest.approx((0.15, 0.45))
    assert ld.box_around(0.8, 0.0, 1.0) == pytest.approx((0.4, 1.0))      # clipped above
    assert ld.box_around(0.1, 0.0, 1.0) == pytest.approx((0.0, 0.2))      # one step (0.1)
    assert ld.box_around(0.4, 0.0, 2.0) == pytest.approx((0.2, 0.6))


def test_stage_two_is_a_seeded_latin_hypercube_in_the_box():
    C = ld.stage_two(4, 20, (0.15, 0.45), seed=3)
    assert C.shape == (20, 4) and ld.inside(C, (0.15, 0.45)).all()
    np.testing.assert_array_equal(C, ld.stage_two(4, 20, (0.15, 0.45), seed=3))
    assert not np.array_equal(C, ld.stage_two(4, 20, (0.15, 0.45), seed=4))
    # one point per stratum of each coefficient
    strata = np.floor((C - 0.15) / 0.3 * 20).astype(int)
    assert all(sorted(strata[:, j]) == list(range(20)) for j in range(4))


def test_run_design_evaluates_both_stages_and_centres_the_box_on_the_best_lambda():
    calls = []

    def evaluate(C):
        calls.append(len(C))
        return _bowl(C)

    T, points = 4, 40
    local = ld.run_design(evaluate, T, points, 0.0, 1.0, [1] * T, "max", seed=0)
    assert calls == [T + ld.DIAGONAL_STEPS, points - T - ld.DIAGONAL_STEPS]
    assert len(local.C) == points and local.Y.shape == (points, T)
    assert local.lam == pytest.approx(0.3)
    assert local.box == pytest.approx((0.15, 0.45))
    # fitted: the box's Latin hypercube and the sweep's points inside the box (0.2, 0.3, 0.4)
    assert local.fitted.sum() == points - T - ld.DIAGONAL_STEPS + 3
    assert local.summary() == {"kind": "local", "ta_lambda": pytest.approx(0.3),
                               "box": pytest.approx([0.15, 0.45]), "points": points,
                               "fitted": int(local.fitted.sum())}
    with pytest.raises(ValueError, match=f"at least {T + 10 + min_points(T)} points"):
        ld.run_design(evaluate, T, T + 10 + min_points(T) - 1, 0.0, 1.0, [1] * T, "max", 0)


def test_solve_front_fits_the_box_only_and_still_picks_among_every_point(tmp_path):
    """Points outside fit_box (here made wildly off the in-box function) do not move the
    surrogates; the evaluated pick still sees them, and NSGA-III searches the box given."""
    from src.core.front import FrontTask, SearchSettings, solve_front
    from src.core.metrics import get_metric

    rng = np.random.default_rng(0)
    box = (0.15, 0.45)
    C_in = ld.stage_two(2, 30, box, seed=1)
    C_out = np.vstack([np.eye(2), [[0.9, 0.9]]])
    Y_in = _bowl(C_in)
    Y_out = np.array([[0.99, 0.02], [0.02, 0.99], [0.01, 0.01]])  # far from the bowl
    C, Y = np.vstack([C_out, C_in]), np.vstack([Y_out, Y_in])
    real = []

    def evaluate_real(Cf):
        real.append(Cf)
        return _bowl(Cf)

    task = FrontTask(C=C, Y=Y, labels=["a", "b"], metric=get_metric("accuracy"),
                     weights=[1.0, 0.0], folder=tmp_path, names="t", reevaluate=3,
                     evaluate_real=evaluate_real, pretrained=np.array([0.3, 0.3]),
                     fit_box=box)
    res = solve_front(task, SearchSettings(low=box[0], high=box[1], n_gen=30, seed=0,
                                           pick="tchebycheff", pick_from="evaluated"))
    probe = ld.stage_two(2, 10, box, seed=rng.integers(100))
    pred = np.column_stack([s.predict(probe) for s in res.surrogates])
    np.testing.assert_allclose(pred, _bowl(probe), atol=0.01)
    assert ld.inside(res.C_front, box).all()
    # weight on the first task only: the fine-tuned model e_1 (outside the box) is the best
    np.testing.assert_array_equal(res.evaluated_pick.coefficients, [1.0, 0.0])
    assert res.evaluated_pick.source == "design"
    # without the box the same points give a fit that misses the bowl
    unboxed = solve_front(FrontTask(**{**task.__dict__, "fit_box": None}),
                          SearchSettings(low=0.0, high=1.0, n_gen=30, seed=0,
                                         pick="tchebycheff"))
    pred = np.column_stack([s.predict(probe) for s in unboxed.surrogates])
    assert np.abs(pred - _bowl(probe)).max() > 0.02


# ------------------------------------------------------------------ the CLI
# A run with the local design (map's default at 4 tasks) end to end: test_many_tasks_cli.py
# (its module run), test_local_design_run_sweeps_ta_then_fits_and_searches_its_box.
def _argv(zoo_root, results: Path, exp_id: str, *extra) -> list[str]:
    return [str(a) for a in ["--demo", "--zoo-dir", zoo_root, "--method", "map",
                             "--zeroshot-merge-models", *FOUR, "--n-gen", 30, "--reevaluate",
                             3, "--max-eval-samples", FEW_IMAGES, "--results-path", results,
                             "--exp-id", exp_id, "--design", "local", *extra]]


def test_local_design_refuses_too_few_points_and_a_sweep(tmp_path, zoo_root, capsys):
    import run_MAP

    assert run_MAP.main(_argv(zoo_root, tmp_path, "few", "--point", 28)) == 2
    err = capsys.readouterr().err
    assert "--design local --point 28: 4 tasks need at least 29 points" in err
    assert "Traceback" not in err and not (tmp_path / "few").exists()
    argv = _argv(zoo_root, tmp_path, "sweep", "--sweep", "pairs")
    assert run_MAP.main(argv) == 2
    err = capsys.readouterr().err
    assert "--design local does not go with --sweep" in err
    assert not (tmp_path / "sweep").exists()
