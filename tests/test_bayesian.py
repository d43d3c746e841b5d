"""Adaptive sampling rounds: bins, scores, posterior, draws, schedule checks and the loop."""

import json
import math

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures

from src.core.bayesian import (
    EMPTY_MARGIN,
    assign_bins,
    bin_bounds,
    bin_scores,
    bins_per_angle,
    check_schedule,
    draw_points,
    n_joint_bins,
    DEFAULT_EXPLORE,
    acquisition_posterior,
    draw_counts,
    run_rounds,
    squared_errors,
)
from map_common.errors import MAPError
from src.core.sampling import to_hyperspherical

WIDTH_T2 = math.pi / 8  # one angle bin for T = 2 (4 bins over [0, pi/2])


def quadratic_fit(C, Y):
    """A plain least-squares quadratic per task: keeps these tests independent of surrogate.py."""
    return [make_pipeline(PolynomialFeatures(2), LinearRegression()).fit(C, Y[:, t]) for t in range(Y.shape[1])]


def bumpy(bump_bin: int):
    """Smooth quadratic truth plus a wiggle a quadratic cannot fit, only inside one phi1 bin (T=2)."""
    lo = bump_bin * WIDTH_T2

    def evaluate(C):
        _, angles = to_hyperspherical(C)
        u = (angles[:, 0] - lo) / WIDTH_T2
        inside = (u >= 0) & (u < 1)
        wiggle = np.where(inside, 0.3 * np.sin(2 * np.pi * 3 * u), 0.0)
        return 0.5 + 0.3 * C - 0.2 * C**2 + 0.1 * C[:, ::-1] + wiggle[:, None]

    return evaluate


# --------------------------------------------------------------------------- bins


def test_bins_per_angle_and_joint_count():
    assert [bins_per_angle(T) for T in range(2, 7)] == [4, 4, 2, 2, 2]
    assert [n_joint_bins(T) for T in range(2, 7)] == [4, 16, 8, 16, 32]


@pytest.mark.parametrize("T", [7, 12])
def test_too_many_tasks_points_to_nested(T):
    with pytest.raises(MAPError, match="at most 6 tasks.*--method nested"):
        bins_per_angle(T)


def test_one_task_is_refused():
    with pytest.raises(MAPError, match="at least 2 tasks"):
        bins_per_angle(1)


@pytest.mark.parametrize("T", [2, 3, 4, 6])
def test_bin_bounds_tile_the_angle_box(T):
    bins = bins_per_angle(T)
    n_joint = bins ** (T - 1)
    lo, hi = bin_bounds(np.arange(n_joint), bins, T)
    assert lo.shape == hi.shape == (n_joint, T - 1)
    np.testing.assert_allclose(hi - lo, math.pi / 2 / bins)
    assert lo.min() == 0 and np.isclose(hi.max(), math.pi / 2)
    assert len(np.unique(np.round(lo, 9), axis=0)) == n_joint  # every cell exactly once
    lo3, hi3 = bin_bounds(3, bins, T)
    np.testing.assert_allclose(lo3, lo[3])
    np.testing.assert_allclose(hi3, hi[3])


@pytest.mark.parametrize("T", [2, 3, 4, 5, 6])
def test_point_drawn_in_bin_is_assigned_back_to_it(T):
    bins = bins_per_angle(T)
    n_joint = bins ** (T - 1)
    rng = np.random.default_rng(T)
    for k in range(n_joint):
        only_k = np.eye(n_joint)[k]
        C, idx = draw_points(only_k, 20, bins, T, rng=rng)
        assert np.all(idx == k)
        assert np.all(assign_bins(C, bins) == k)


def test_assign_bins_edges():
    # phi1 = 0 (pure task 1) is bin 0; phi1 = pi/2 (pure task 2) is the last bin, not out of range.
    # atan(0.5) = 0.46 lies in [pi/8, pi/4): bin 1.
    assert assign_bins(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.5]]), 4).tolist() == [0, 3, 1]
    # T=3, first angle most significant: c = e_3 has both angles pi/2 -> last bin.
    assert assign_bins(np.eye(3), 4).tolist() == [0, 12, 15]


# --------------------------------------------------------------------------- scores


def test_bin_scores_hand_example_without_spread():
    sq_err = np.array([1.0, 1.0, 1.0, 4.0, 0.0, 2.0])
    idx = np.array([0, 0, 0, 1, 2, 2])
    scores = bin_scores(sq_err, idx, 4, lam=0.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(scores, [1.0, 4.0, 1.0, 4.0 * (1 + EMPTY_MARGIN)])


def test_bin_scores_spread_term():
    sq_err = np.array([1.0, 1.0, 1.0, 4.0, 0.0, 2.0])
    idx = np.array([0, 0, 0, 1, 2, 2])
    scores = bin_scores(sq_err, idx, 4, lam=0.5, rng=np.random.default_rng(0))
    # Equal errors and a single point have no spread; bin 2 keeps one of {0, 2} per resample,
    # so its spread is in (0, 1].
    assert scores[0] == 1.0 and scores[1] == 4.0
    assert 1.0 < scores[2] <= 1.5
    assert scores[3] > scores[:3].max()
    # Keeping every point in every resample leaves no spread at all.
    no_drop = bin_scores(sq_err, idx, 4, lam=0.5, drop=0.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(no_drop[:3], [1.0, 4.0, 1.0])
    again = bin_scores(sq_err, idx, 4, lam=0.5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(scores, again)


def test_empty_bins_score_highest():
    rng = np.random.default_rng(1)
    sq_err = rng.uniform(0, 5, size=40)
    idx = rng.choice([0, 2, 5], size=40)
    scores = bin_scores(sq_err, idx, 8, rng=rng)
    empty = np.setdiff1d(np.arange(8), [0, 2, 5])
    assert scores[empty].min() > scores[[0, 2, 5]].max()
    # All empty: a uniform preference. A perfect fit: empty bins still come first.
    np.testing.assert_array_equal(bin_scores(np.zeros(0), np.zeros(0, int), 4, rng=rng), np.ones(4))
    perfect = bin_scores(np.zeros(3), np.array([0, 0, 1]), 3, rng=rng)
    np.testing.assert_array_equal(perfect, [0.0, 0.0, 1.0])


def test_floor_keeps_empty_bins_ahead_of_rounding_noise():
    noise = np.array([1e-32, 3e-31, 2e-33])
    scores = bin_scores(noise, np.array([0, 1, 2]), 4, rng=np.random.default_rng(0), floor=1e-8)
    assert scores[3] == pytest.approx(1e-8 * (1 + EMPTY_MARGIN))
    assert scores[:3].max() < 1e-29


def test_exact_fit_leaves_the_posterior_alone():
    """A truth the surrogate fits exactly: errors are rounding noise and must not pick a bin."""

    def quadratic_truth(C):
        return 0.5 + 0.3 * C - 0.2 * C**2 + 0.1 * C[:, ::-1] + 0.05 * C.prod(axis=1, keepdims=True)

    res = run_rounds(quadratic_truth, 2, n_initial=8, n_update=10, n_iter=2, fit=quadratic_fit, seed=0)
    assert np.bincount(assign_bins(res.C[:8], 4), minlength=4).min() > 0  # no empty bin to prefer
    np.testing.assert_allclose(res.records[1]["bin_posterior"], 0.25, rtol=1e-3)


def test_squared_errors_average_over_tasks():
    C = np.array([[0.0, 1.0], [1.0, 0.0]])
    Y = np.array([[1.0, 2.0], [3.0, 5.0]])
    models = [LinearRegression().fit(C, np.zeros(2)), LinearRegression().fit(C, np.ones(2))]
    np.testing.assert_allclose(squared_errors(models, C, Y), [(1 + 1) / 2, (9 + 16) / 2])


# --------------------------------------------------------------------------- posterior


# Bin scores measured on the demo zoo (LetterVal / DigitVal, default schedule, seed 0),
# rounds 1-3; the old acquisition turned each into the posterior [0, 0, 0, 1].
DEMO_SCORES = [
    [4.70025568706259e-05, 6.217438029069943e-05, 0.0, 0.0007502628618983556],
    [0.00022665024825347331, 0.00022027863864481912, 0.00028489504584886834, 0.00038130093738921464],
    [0.00024561378850072445, 0.00020931248730134743, 0.00034086162967422257, 0.00026546470258804843],
]


@pytest.mark.parametrize("scores", DEMO_SCORES)
def test_demo_scores_keep_every_bin(scores):
    post = acquisition_posterior(np.array(scores))
    assert np.isclose(post.sum(), 1.0)
    assert post.min() >= DEFAULT_EXPLORE / 4 - 1e-12  # no bin gets 0
    assert post.max() < 0.9  # not one-hot
    # More error, more mass (ties aside).
    assert np.argsort(post, kind="stable").tolist() == np.argsort(scores, kind="stable").tolist()


def test_comparable_errors_get_comparable_draws():
    # Rounds 2 and 3 of the demo: every bin within a factor 2 of the worst keeps >= 1/2 of its share.
    for scores in DEMO_SCORES[1:]:
        post = acquisition_posterior(np.array(scores))
        assert post.min() > 0.5 * post.max(), post


def test_draws_in_proportion_to_the_scores():
    post = acquisition_posterior(np.array([1.0, 2.0]))
    ratio = post[1] / post[0]
    assert 1.7 < ratio <= 2.0, post  # the exploration floor pulls 2 a little towards 1
    assert acquisition_posterior(np.array([1.0, 2.0]), explore=0.0)[1] == pytest.approx(2 / 3)
    # Over many rounds of 5 draws the counts follow the same ratio (not 0:1).
    rng = np.random.default_rng(0)
    counts = np.bincount(np.concatenate([draw_counts(post, 5, rng) for _ in range(400)]), minlength=2)
    assert counts[1] / counts[0] == pytest.approx(ratio, rel=0.1), counts


def test_one_much_worse_bin_gets_most_draws():
    post = acquisition_posterior(np.array([1.0, 1.0, 1.0, 100.0]))
    assert post[3] > 0.85 and post[:3].min() > 0
    rng = np.random.default_rng(1)
    idx = draw_counts(post, 20, rng)
    assert np.sum(idx == 3) >= 17


def test_posterior_is_scale_free_and_tempered():
    scores = np.array([1.0, 3.0, 2.0, 0.0])
    base = acquisition_posterior(scores)
    np.testing.assert_allclose(acquisition_posterior(1e-300 * scores), base)
    np.testing.assert_allclose(acquisition_posterior(1e300 * scores), base)
    # Equal scores: uniform; all zero: uniform.
    np.testing.assert_allclose(acquisition_posterior(np.full(3, 7.0)), 1 / 3)
    np.testing.assert_allclose(acquisition_posterior(np.zeros(3)), 1 / 3)
    # A cold temperature concentrates on the best bin (but keeps the floor); a hot one flattens.
    cold = acquisition_posterior(scores, temperature=0.01)
    assert cold[1] == pytest.approx(1 - DEFAULT_EXPLORE + DEFAULT_EXPLORE / 4)
    hot = acquisition_posterior(scores, temperature=100.0)
    assert hot[:3].max() / hot[:3].min() < base[:3].max() / base[:3].min()
    with pytest.raises(ValueError):
        acquisition_posterior(np.array([1.0, -1.0]))
    with pytest.raises(ValueError):
        acquisition_posterior(scores, temperature=0)


def test_draw_counts_follow_the_posterior_closely():
    rng = np.random.default_rng(2)
    p = np.array([0.1, 0.0, 0.3, 0.6])
    for n in (1, 5, 10, 37):
        counts = np.bincount(draw_counts(p, n, rng), minlength=4)
        assert counts.sum() == n and counts[1] == 0
        assert np.all(np.abs(counts - n * p) < 1 + 1e-9), (n, counts)


def test_each_round_follows_its_own_errors():
    """No compounding: the surrogate errs in bin 3 in round 1 and in bin 0 in round 2, so
    round 2 must favour bin 0 (a product of posteriors would stay on bin 3)."""
    calls = []

    class Wrong:
        def __init__(self, bin_):
            self.bin = bin_

        def predict(self, C):
            return np.asarray(C)[:, 0] + 0.5 * (assign_bins(C, 4) == self.bin)

    def fit(C, Y):
        calls.append(len(C))
        bin_ = {1: 3, 2: 0}.get(len(calls), 1)
        return [Wrong(bin_), Wrong(bin_)]

    res = run_rounds(lambda C: np.column_stack([C[:, 0], C[:, 0]]), 2, n_initial=8,
                     n_update=10, n_iter=2, fit=fit, seed=0)
    first, second = (np.array(r["bin_posterior"]) for r in res.records[1:3])
    assert np.argmax(first) == 3 and np.argmax(second) == 0, (first, second)
    assert first.min() > 0 and second.min() > 0
    counts = np.bincount(assign_bins(res.C[res.round_of_point == 2], 4), minlength=4)
    assert counts[0] == counts.max() and counts.sum() == 10


# --------------------------------------------------------------------------- draws


@pytest.mark.parametrize("T", [2, 3, 5])
def test_drawn_points_lie_in_their_bins_and_radius(T):
    bins = bins_per_angle(T)
    n_joint = bins ** (T - 1)
    rng = np.random.default_rng(7)
    posterior = rng.uniform(size=n_joint)
    posterior[::3] = 0.0
    posterior /= posterior.sum()
    C, idx = draw_points(posterior, 400, bins, T, radius=(0.3, 0.6), rng=rng)
    assert C.shape == (400, T) and idx.shape == (400,)
    assert np.all(C >= 0)
    r, angles = to_hyperspherical(C)
    assert np.all((r >= 0.3 - 1e-12) & (r <= 0.6 + 1e-12))
    lo, hi = bin_bounds(idx, bins, T)
    assert np.all((angles >= lo - 1e-12) & (angles <= hi + 1e-12))
    assert posterior[idx].min() > 0  # zero-mass bins are never drawn
    # More mass, more draws: the heaviest bin is drawn more often than the lightest positive one.
    counts = np.bincount(idx, minlength=n_joint)
    pos = np.flatnonzero(posterior)
    assert counts[pos[np.argmax(posterior[pos])]] > counts[pos[np.argmin(posterior[pos])]]


# --------------------------------------------------------------------------- schedule


def test_default_schedule_is_valid():
    from args import default_bayes_schedule

    for T in range(2, 7):
        n_initial, n_update, n_iter = default_bayes_schedule(T)
        assert n_initial >= (T + 1) * (T + 2) // 2
        check_schedule(T, n_initial, n_update, n_iter)


@pytest.mark.parametrize(
    "T, n_initial, n_update, n_iter, words",
    [
        (7, 40, 5, 3, "at most 6 tasks"),
        (3, 9, 5, 3, "n_initial=9 is too small.*10 parameters"),
        (3, 12, 0, 3, "n_update must be a positive integer, got 0"),
        (3, 12, 5, -1, "n_iter must be a positive integer, got -1"),
        (3, 0, 5, 3, "n_initial must be a positive integer, got 0"),
        (3, 12, 2.5, 3, "n_update must be a positive integer, got 2.5"),
    ],
)
def test_bad_schedules_raise(T, n_initial, n_update, n_iter, words):
    with pytest.raises(MAPError, match=words):
        check_schedule(T, n_initial, n_update, n_iter)


def test_run_rounds_refuses_before_evaluating():
    def evaluate(C):
        raise AssertionError("must not evaluate")

    with pytest.raises(MAPError, match="--method nested"):
        run_rounds(evaluate, 7, n_initial=40, n_update=5, n_iter=3, fit=quadratic_fit)
    with pytest.raises(MAPError, match="temperature"):
        run_rounds(evaluate, 2, n_initial=8, n_update=5, n_iter=3, fit=quadratic_fit, temperature=0)
    with pytest.raises(MAPError, match="radius"):
        run_rounds(evaluate, 2, n_initial=8, n_update=5, n_iter=3, fit=quadratic_fit, radius=(0.5, 0.1))


# --------------------------------------------------------------------------- loop


@pytest.mark.parametrize("bump_bin", [0, 1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rounds_sample_where_the_surrogate_is_wrong(bump_bin, seed):
    res = run_rounds(
        bumpy(bump_bin), 2, n_initial=8, n_update=10, n_iter=3, link="identity", fit=quadratic_fit, seed=seed
    )
    new = res.round_of_point > 0
    counts = np.bincount(assign_bins(res.C[new], 4), minlength=4)
    others = np.delete(counts, bump_bin)
    assert counts[bump_bin] > others.max(), counts
    assert counts[bump_bin] > new.sum() / 2, counts


@pytest.mark.parametrize("link", ["identity", "sigmoid"])
def test_rounds_with_the_default_surrogates(link):
    truth = bumpy(2)
    res = run_rounds(lambda C: 0.2 + 0.5 * truth(C), 2, n_initial=12, n_update=10, n_iter=3, link=link, seed=0)
    counts = np.bincount(assign_bins(res.C[res.round_of_point > 0], 4), minlength=4)
    assert counts[2] > np.delete(counts, 2).max(), counts
    assert len(res.surrogates) == 2
    assert all(s.link == link for s in res.surrogates)


def test_loop_shapes_records_and_callback():
    seen = []
    res = run_rounds(
        bumpy(0), 3, n_initial=12, n_update=4, n_iter=2, fit=quadratic_fit, seed=3, on_round=seen.append
    )
    assert res.C.shape == res.Y.shape == (12 + 2 * 4, 3)
    assert res.round_of_point.tolist() == [0] * 12 + [1] * 4 + [2] * 4
    assert [r["round"] for r in res.records] == [0, 1, 2]
    assert seen == res.records
    json.dumps(res.records)  # plain lists, floats, ints and None only
    for rec in res.records[1:]:
        assert len(rec["points"]) == 4 and len(rec["bin_posterior"]) == len(rec["bin_scores"]) == 16
        assert np.isclose(sum(rec["bin_posterior"]), 1.0) and rec["surrogate_mse"] >= 0
    assert [r["n_points"] for r in res.records] == [12, 16, 20]
    np.testing.assert_allclose(res.records[2]["points"], res.C[16:])
    assert len(res.surrogates) == 3
    np.testing.assert_allclose(
        res.records[2]["surrogate_mse"],
        squared_errors(quadratic_fit(res.C[:16], res.Y[:16]), res.C[:16], res.Y[:16]).mean()
    )


@pytest.mark.parametrize("n_done", [5, 8, 21, 38])
def test_resumed_run_draws_the_same_points_without_reevaluating(n_done):
    truth = bumpy(0)
    kwargs = dict(n_initial=8, n_update=10, n_iter=3, fit=quadratic_fit, seed=11)
    full = run_rounds(truth, 2, **kwargs)

    evaluated = []

    def counting(C):
        evaluated.append(C.copy())
        return truth(C)

    resumed = run_rounds(counting, 2, C_done=full.C[:n_done], Y_done=full.Y[:n_done], **kwargs)
    n_new = sum(len(c) for c in evaluated)
    assert n_new == len(full.C) - n_done
    np.testing.assert_allclose(resumed.C, full.C)
    np.testing.assert_allclose(resumed.Y, full.Y)
    assert resumed.records == full.records
    if evaluated:
        np.testing.assert_allclose(np.concatenate(evaluated), full.C[n_done:])


def test_resume_with_more_points_than_the_schedule_is_refused():
    C = np.random.default_rng(0).uniform(size=(40, 2))
    with pytest.raises(MAPError, match="40 points"):
        run_rounds(bumpy(0), 2, n_initial=8, n_update=5, n_iter=3, fit=quadratic_fit, C_done=C, Y_done=C)


# --------------------------------------------------------------------------- EHVI rounds


def two_peaks(C):
    """Two accuracies in (0, 1) that trade off: each rises with its own coefficient and
    falls with the other's square; their front runs through the box's interior."""
    C = np.atleast_2d(C)
    z1 = 3 * C[:, 0] - 4 * C[:, 1] ** 2
    z2 = 3 * C[:, 1] - 4 * C[:, 0] ** 2
    return 1 / (1 + np.exp(-np.column_stack([z1, z2])))


def test_proposed_points_come_first_and_the_bins_fill_the_rest():
    fixed = np.array([[0.3, 0.3], [0.6, 0.2]])
    asked = []

    def propose(C, Y, k, r):
        asked.append((len(C), k, r))
        return fixed[: r]  # round 1 offers one point, round 2 two

    res = run_rounds(bumpy(1), 2, n_initial=8, n_update=4, n_iter=2, fit=quadratic_fit,
                     seed=0, propose=propose, acquisition="test")
    assert asked == [(8, 4, 1), (12, 4, 2)]
    np.testing.assert_array_equal(res.C[8:9], fixed[:1])
    np.testing.assert_array_equal(res.C[12:14], fixed)
    assert res.round_of_point.tolist() == [0] * 8 + [1] * 4 + [2] * 4
    assert [(r["acquisition"], r["proposed"]) for r in res.records[1:]] == [("test", 1),
                                                                           ("test", 2)]
    # the bins' share of a round follows the posterior it records
    for rec, proposed in zip(res.records[1:], (1, 2)):
        drawn = np.array(rec["points"])[proposed:]
        counts = np.bincount(assign_bins(drawn, 4), minlength=4)
        expected = len(drawn) * np.array(rec["bin_posterior"])
        assert (counts >= np.floor(expected - 1e-9)).all() and \
            (counts <= np.ceil(expected + 1e-9)).all()


def test_a_proposal_longer_than_the_round_is_cut_to_it():
    res = run_rounds(bumpy(1), 2, n_initial=8, n_update=3, n_iter=1, fit=quadratic_fit,
                     propose=lambda C, Y, k, r: np.full((k + 4, 2), 0.4))
    assert len(res.C) == 11 and res.records[1]["proposed"] == 3


def _distance_to_front(C):
    """Distance of each point (coefficient space) to the nearest point of two_peaks' true
    Pareto set, found on a fine grid."""
    from src.core.objectives import non_dominated

    g = np.linspace(0, 1, 201)
    grid = np.array(np.meshgrid(g, g)).reshape(2, -1).T
    pareto_set = grid[non_dominated(two_peaks(grid), ["max", "max"])]
    return np.linalg.norm(C[:, None] - pareto_set[None], axis=2).min(axis=1)


@pytest.mark.parametrize("seed", [0, 1])
def test_ehvi_rounds_sample_on_the_front_and_error_rounds_do_not(seed):
    from src.core.bayesian import ehvi_proposer

    kwargs = dict(n_initial=8, n_update=5, n_iter=3, link="sigmoid", seed=seed)
    propose = ehvi_proposer("sigmoid", ["max", "max"], low=0.0, high=1.0, n_gen=60,
                            seed=seed, min_distance=0.05)
    ehvi = run_rounds(two_peaks, 2, propose=propose, acquisition="ehvi", **kwargs)
    error = run_rounds(two_peaks, 2, **kwargs)
    assert [r["proposed"] for r in ehvi.records[1:]] == [5, 5, 5]
    near = _distance_to_front(ehvi.C[8:])
    assert np.median(near) < 0.05, near
    assert np.median(near) < 0.5 * np.median(_distance_to_front(error.C[8:]))
    # no proposed point within min_distance of one evaluated before it
    for i in range(8, len(ehvi.C)):
        assert np.linalg.norm(ehvi.C[:i] - ehvi.C[i], axis=1).min() > 0.05


def test_ehvi_rounds_resume_to_the_same_points():
    from src.core.bayesian import ehvi_proposer

    def make():
        return ehvi_proposer("sigmoid", ["max", "max"], low=0.0, high=1.0, n_gen=40, seed=5,
                             min_distance=0.05)

    kwargs = dict(n_initial=8, n_update=4, n_iter=3, link="sigmoid", seed=5)
    full = run_rounds(two_peaks, 2, propose=make(), **kwargs)
    run_rounds(bumpy(2), 2, propose=make(), **kwargs)  # other work in between
    resumed = run_rounds(two_peaks, 2, propose=make(), C_done=full.C[:14], Y_done=full.Y[:14],
                         **kwargs)
    np.testing.assert_array_equal(resumed.C, full.C)


@pytest.mark.parametrize("T", [2, 3])
def test_initial_design_picks_round_zero(T):
    from src.core.sampling import design, lhs_design

    kwargs = dict(n_initial=12, n_update=4, n_iter=1, fit=quadratic_fit, seed=5)
    lhs = run_rounds(bumpy(0), T, initial_design="lhs", **kwargs)
    grid = run_rounds(bumpy(0), T, **kwargs)
    np.testing.assert_allclose(lhs.C[:12], lhs_design(T, 12, 0.0, 1.0, 5))
    np.testing.assert_allclose(grid.C[:12], design(T, 12, n_diagonal=1, seed=5))
    assert not np.allclose(lhs.C[:12], grid.C[:12])
    with pytest.raises(ValueError, match="one of"):
        run_rounds(bumpy(0), T, initial_design="sobol", **kwargs)
