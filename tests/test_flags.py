"""Flags that change what a run does, each checked for its effect on the demo zoo:
--bounds, --search-bounds, --design lhs, --refine-tol, --pdf, --seed and --cache-dir reuse.
Expected values are derived here from the flags (the box, the Latin hypercube's strata,
the tolerance), not from the code under test."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import FEW_IMAGES

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

POINTS = 10
LOW, HIGH = 0.2, 0.8          # --bounds: the box sampled
S_LOW, S_HIGH = -0.5, 1.5     # --search-bounds: the box NSGA-III searches


def _read(path: Path):
    return json.loads(Path(path).read_text())


def _stored(run_dir: Path, pair) -> np.ndarray:
    data = _read(run_dir / f"{'_'.join(pair)}scaling_results.json")
    return np.array([[data[k]["models"][m] for m in pair] for k in sorted(data, key=int)])


@pytest.fixture(scope="module")
def pair(demo_zoo) -> list[str]:
    return list(demo_zoo.tasks[:2])


def _argv(zoo_root, results, exp_id, pair, seed, cache, *extra) -> list:
    return ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--n-gen", 20,
            "--zeroshot-merge-models", *pair, "--point", POINTS, "--bounds", LOW, HIGH,
            "--design", "lhs", "--seed", seed, "--cache-dir", cache, "--max-eval-samples",
            FEW_IMAGES, "--results-path", results, "--exp-id", exp_id, *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, zoo_root, pair):
    """seed 3 with every flag; seed 4 and seed 3 again (no refinement, no re-evaluation),
    the last two reading the evaluation sets from the first run's --cache-dir only."""
    import run_MAP
    import task_vectors.eval_data as eval_data

    results = tmp_path_factory.mktemp("flags")
    cache = results / "cache"
    main = ["--search-bounds", S_LOW, S_HIGH, "--pdf", "--reevaluate", 3,
            "--refine-rounds", 2, "--refine-points", 2, "--refine-tol", 1.0]
    assert run_MAP.main([str(a) for a in _argv(zoo_root, results, "s3", pair, 3, cache,
                                                *main)]) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.glob("eval_*.pt")}

    def no_decoding(*args, **kwargs):
        raise AssertionError("an evaluation set was decoded again despite --cache-dir")

    real_decode = eval_data.decode_dataset
    eval_data.decode_dataset = no_decoding
    try:
        for exp_id, seed in (("s4", 4), ("s3-again", 3)):
            assert run_MAP.main([str(a) for a in _argv(
                zoo_root, results, exp_id, pair, seed, cache, "--reevaluate", 0,
                "--refine-rounds", 0)]) == 0
    finally:
        eval_data.decode_dataset = real_decode
    return results, cache, stamps


def test_bounds_box_the_design_and_lhs_puts_one_point_per_stratum(runs, pair):
    results, _, _ = runs
    C = _stored(results / "s3-again", pair)
    assert C.shape == (POINTS, 2)
    assert (C >= LOW - 1e-12).all() and (C <= HIGH + 1e-12).all()
    # --design lhs: the one-hot models clipped to the box, the box's centre, then a Latin
    # hypercube: each axis's 7 remaining values fall one per seventh of [LOW, HIGH]
    np.testing.assert_allclose(C[:3], [[HIGH, LOW], [LOW, HIGH], [0.5, 0.5]])
    rest = C[3:]
    strata = np.floor((rest - LOW) / (HIGH - LOW) * len(rest)).astype(int)
    for k in range(2):
        assert sorted(strata[:, k]) == list(range(len(rest)))


def test_seed_changes_the_design_and_only_the_seed_does(runs, pair):
    results, _, _ = runs
    s3, s4, again = (_stored(results / e, pair)[:POINTS] for e in ("s3", "s4", "s3-again"))
    np.testing.assert_array_equal(s3, again)  # same seed, other flags: the same design
    assert not np.allclose(s3[3:], s4[3:])    # another seed: another hypercube
    np.testing.assert_array_equal(s3[:3], s4[:3])  # the fixed points do not depend on it


def test_search_bounds_widen_the_searched_box_beyond_the_sampled_one(runs, pair):
    results, _, _ = runs
    front = np.array([json.loads(k) for k in
                      _read(results / "s3" / f"{'_'.join(pair)}pareto_front.json")])
    assert (front >= S_LOW - 1e-9).all() and (front <= S_HIGH + 1e-9).all()
    assert ((front < LOW) | (front > HIGH)).any()  # the search went outside --bounds
    narrow = np.array([json.loads(k) for k in
                       _read(results / "s4" / f"{'_'.join(pair)}pareto_front.json")])
    assert (narrow >= LOW - 1e-9).all() and (narrow <= HIGH + 1e-9).all()  # default: --bounds


def test_refine_tol_stops_after_the_first_round_within_it(runs, pair):
    results, _, _ = runs
    refine = _read(results / "s3" / "run.json")["summary"]["refine"]
    # every |predicted - real| accuracy gap is at most 1.0: round 1 meets --refine-tol 1.0
    assert refine["stopped"] == "tol" and refine["converged"] is True
    assert len(refine["points_per_round"]) == 1 and refine["points_per_round"][0] == 2
    assert len(_stored(results / "s3", pair)) == POINTS + 2  # the design, then round 1


def test_pdf_writes_a_pdf_beside_every_figure(runs):
    results, _, _ = runs
    figures = [Path(f) for f in _read(results / "s3" / "run.json")["summary"]["figures"]]
    pngs = [f for f in figures if f.suffix == ".png"]
    assert pngs
    for png in pngs:
        assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-", png
    assert not list((results / "s4").glob("*.pdf"))  # without --pdf: none


def test_cache_dir_is_reused_not_rewritten(runs, pair):
    results, cache, stamps = runs
    assert len(stamps) == 2  # one decoded evaluation set per task
    # the later runs read them (decoding raised) and left them as they were
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("eval_*.pt")} == stamps
    a = _read(results / "s3" / f"{'_'.join(pair)}scaling_results.json")
    b = _read(results / "s3-again" / f"{'_'.join(pair)}scaling_results.json")
    for k in b:  # the same points, the same values from the cached sets
        assert b[k] == a[k]
