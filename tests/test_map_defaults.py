"""map's defaults by number of tasks (args.py default_design / default_refine_rounds /
default_refine_acquisition): lhs, two EHVI refinement rounds of 5 points for 2 and 3
tasks; the local design, no refinement, spread from 4 tasks; the grid design, no refinement,
spread for the other modes.
Explicit flags win, and run.json records the values in force."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from map_common.errors import MAPError

from helpers import FEW_IMAGES, CountingEvaluate, check_final_model_file

PAIR = ["LetterVal", "DigitVal"]
TRIPLE = ["LetterVal", "DigitVal", "ShapeVal"]
FOUR = ["LetterVal", "DigitVal", "ShapeVal", "ColorVal"]
REFINED = ("lhs", 2, 5, "ehvi")
PLAIN = ("grid", 0, 5, "spread")
MANY = ("local", 0, 5, "spread")  # map from 4 tasks


def _config(zoo_root: str, *flags):
    from args import DEFAULTS, parse_arguments
    from src.run.config import build_config

    argv = ["--demo", "--zoo-dir", zoo_root, "--device", "cpu", *map(str, flags)]
    return build_config(parse_arguments(argv), DEFAULTS)


def _resolved(config) -> tuple:
    return (config.design, config.refine_rounds, config.refine_points,
            config.refine_acquisition)


def _recorded(config) -> tuple:
    a = config.arguments
    return a["design"], a["refine_rounds"], a["refine_points"], a["refine_acquisition"]


@pytest.mark.parametrize("models, expected", [(PAIR, REFINED), (TRIPLE, REFINED),
                                              (FOUR, MANY)])
def test_map_defaults_depend_on_the_number_of_tasks(zoo_root, models, expected):
    config = _config(zoo_root, "--method", "map", "--zeroshot-merge-models", *models)
    assert _resolved(config) == expected
    assert _recorded(config) == expected  # run.json's arguments: the values in force


def test_the_defaults_are_the_functions_of_args_py():
    from args import DEFAULTS, default_design, default_refine_acquisition, default_refine_rounds

    assert DEFAULTS.design is default_design
    assert DEFAULTS.refine_rounds is default_refine_rounds
    assert DEFAULTS.refine_acquisition is default_refine_acquisition
    assert [default_design(T) for T in (2, 3, 4, 8)] == ["lhs", "lhs", "local", "local"]
    assert [default_refine_rounds(T) for T in (2, 3, 4, 8)] == [2, 2, 0, 0]
    assert [default_refine_acquisition(T) for T in (2, 3, 4, 8)] == \
        ["ehvi", "ehvi", "spread", "spread"]


def test_the_pick_floor_defaults_to_task_arithmetic_for_map_and_nested_from_four_tasks(zoo_root):
    from args import DEFAULTS, default_pick_floor

    assert DEFAULTS.pick_floor is default_pick_floor
    assert [default_pick_floor(T) for T in (2, 3, 4, 8)] == \
        ["pretrained", "pretrained", "task-arithmetic", "task-arithmetic"]
    for method, models, flags, expected in [
            ("map", FOUR, [], "task-arithmetic"), ("map", PAIR, [], "pretrained"),
            ("map", FOUR, ["--pick-floor", "pretrained"], "pretrained"),
            ("map", PAIR, ["--pick-floor", "task-arithmetic"], "task-arithmetic"),
            ("bayesian", FOUR, [], "pretrained"), ("nested", FOUR, [], "task-arithmetic"),
            ("nested", PAIR, [], "pretrained")]:
        config = _config(zoo_root, "--method", method, "--zeroshot-merge-models", *models,
                         *flags)
        assert config.pick_floor == expected, (method, models, flags)
        assert config.arguments["pick_floor"] == expected  # run.json: the value in force
    sweep = _config(zoo_root, "--sweep", "pairs", "--zeroshot-merge-models", *FOUR)
    assert sweep.pick_floor == "pretrained"  # the subsets' size decides


def test_nested_merges_pairs_beside_task_arithmetic_from_four_tasks(zoo_root):
    from args import DEFAULTS, default_nested_context

    assert DEFAULTS.nested_context is default_nested_context
    assert [default_nested_context(T) for T in (2, 3, 4, 8)] == \
        ["none", "none", "task-arithmetic", "task-arithmetic"]
    for models, flags, expected in [
            (FOUR, [], "task-arithmetic"), (PAIR, [], "none"),
            (FOUR, ["--nested-context", "none"], "none"),
            (PAIR, ["--nested-context", "task-arithmetic"], "task-arithmetic")]:
        config = _config(zoo_root, "--method", "nested", "--zeroshot-merge-models", *models,
                         *flags)
        assert config.nested_context == expected, (models, flags)
        assert config.arguments["nested_context"] == expected  # run.json: the value in force
    config = _config(zoo_root, "--method", "map", "--zeroshot-merge-models", *FOUR)
    assert config.nested_context == "none" and config.arguments["nested_context"] is None
    with pytest.raises(MAPError, match=r"^--nested-context sets what lies beside nested's "
                                       r"pairs; --method map merges no pairs$"):
        _config(zoo_root, "--method", "map", "--nested-context", "none")


def test_nested_picks_by_the_weighted_mean_under_the_ta_floor(zoo_root):
    from args import DEFAULTS, default_nested_pick

    assert DEFAULTS.nested_pick is default_nested_pick
    assert [default_nested_pick(f) for f in ("task-arithmetic", "pretrained")] == \
        ["weighted-sum", "tchebycheff"]
    for method, models, flags, expected in [
            ("nested", FOUR, [], "weighted-sum"), ("nested", PAIR, [], "tchebycheff"),
            ("nested", FOUR, ["--pick-floor", "pretrained"], "tchebycheff"),
            ("nested", PAIR, ["--pick-floor", "task-arithmetic"], "weighted-sum"),
            ("nested", FOUR, ["--pick", "tchebycheff"], "tchebycheff"),
            ("map", FOUR, [], "tchebycheff"), ("map", PAIR, ["--pick", "weighted-sum"],
                                               "weighted-sum"),
            ("bayesian", FOUR, [], "tchebycheff")]:
        config = _config(zoo_root, "--method", method, "--zeroshot-merge-models", *models,
                         *flags)
        assert config.pick == expected, (method, models, flags)
        assert config.arguments["pick"] == expected  # run.json: the value in force


@pytest.mark.parametrize("flags, expected", [
    (["--design", "grid"], ("grid", 2, 5, "ehvi")),
    (["--refine-rounds", "0"], ("lhs", 0, 5, "spread")),  # a defaulted acquisition: no refusal
    (["--refine-acquisition", "spread"], ("lhs", 2, 5, "spread")),
    (["--refine-rounds", "3", "--refine-points", "2"], ("lhs", 3, 2, "ehvi")),
    (["--design", "grid", "--refine-rounds", "0"], PLAIN),
])
def test_explicit_flags_win_over_the_pair_defaults(zoo_root, flags, expected):
    config = _config(zoo_root, "--method", "map", "--zeroshot-merge-models", *PAIR, *flags)
    assert _resolved(config) == expected and _recorded(config) == expected


@pytest.mark.parametrize("flags, expected", [
    (["--design", "lhs"], ("lhs", 0, 5, "spread")),
    (["--design", "grid"], PLAIN),
    (["--refine-rounds", "1"], ("local", 1, 5, "spread")),
    (["--refine-rounds", "1", "--refine-acquisition", "ehvi"], ("local", 1, 5, "ehvi")),
])
def test_explicit_flags_win_over_the_four_task_defaults(zoo_root, flags, expected):
    config = _config(zoo_root, "--method", "map", "--zeroshot-merge-models", *FOUR, *flags)
    assert _resolved(config) == expected and _recorded(config) == expected


@pytest.mark.parametrize("models", [PAIR, TRIPLE])
def test_the_other_modes_keep_grid_no_refinement_spread(zoo_root, models):
    """bayesian keeps no refinement and spread; its first round before its EHVI rounds is
    the LHS design (args.default_bayes_design)."""
    bayes = _config(zoo_root, "--method", "bayesian", "--zeroshot-merge-models", *models)
    expected = ("lhs",) + PLAIN[1:]
    assert _resolved(bayes) == expected and _recorded(bayes) == expected
    assert _config(zoo_root, "--method", "bayesian", "--zeroshot-merge-models", *models,
                   "--refine-rounds", "1").refine_acquisition == "spread"
    nested = _config(zoo_root, "--method", "nested")
    assert _resolved(nested) == PLAIN
    grid = _config(zoo_root, "--method", "grid", "--zeroshot-merge-models", *models)
    assert _resolved(grid) == PLAIN


@pytest.mark.parametrize("sweep", ["pairs", "triples"])
def test_a_sweep_takes_the_defaults_of_its_subset_size(zoo_root, sweep):
    config = _config(zoo_root, "--sweep", sweep, "--zeroshot-merge-models", *FOUR)
    assert config.method == "map" and config.T == 4
    assert _resolved(config) == REFINED and _recorded(config) == REFINED


@pytest.mark.parametrize("flags", [
    ["--method", "map", "--zeroshot-merge-models", *PAIR, "--refine-rounds", "0"],
    ["--method", "map", "--zeroshot-merge-models", *FOUR],       # rounds 0 by default
    ["--method", "bayesian", "--zeroshot-merge-models", *PAIR],  # rounds 0 by default
])
def test_an_explicit_ehvi_without_rounds_is_refused_in_one_line(zoo_root, tmp_path, capsys,
                                                                 flags):
    import run_MAP

    code = run_MAP.main(["--demo", "--zoo-dir", zoo_root, *flags, "--refine-acquisition",
                         "ehvi", "--results-path", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--refine-acquisition ehvi" in err and "--refine-rounds 1 or more" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_pair_run_with_default_flags(zoo_root, tmp_path, monkeypatch, one_thread):
    """--method map on a demo pair, no design or refinement flag: the 12-point LHS design,
    two EHVI rounds of 5 new points, the pretrained model, 5 front points re-evaluated; a
    resume resolves the same way and evaluates nothing."""
    import run_MAP
    from src.core.sampling import lhs_design
    from task_vectors.engine import MergeEngine

    argv = ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--n-gen", "50",
            "--max-eval-samples", str(FEW_IMAGES), "--zeroshot-merge-models", *PAIR,
            "--results-path", str(tmp_path), "--exp-id", "defaults"]
    original = MergeEngine.evaluate
    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert run_MAP.main(argv) == 0
    run_dir = tmp_path / "defaults"
    info = json.loads((run_dir / "run.json").read_text())
    a, summary = info["arguments"], info["summary"]
    assert (a["design"], a["refine_rounds"], a["refine_points"], a["refine_acquisition"]) == \
        REFINED
    assert counter.calls == 12 + 10 + 1 + 5

    names = "_".join(PAIR)
    stored = json.loads((run_dir / f"{names}scaling_results.json").read_text())
    C = np.array([[stored[k]["models"][m] for m in PAIR] for k in sorted(stored, key=int)])
    assert len(C) == 12 + 10 == summary["n_evaluations"]
    np.testing.assert_allclose(C[:12], lhs_design(2, 12, 0.0, 1.0, seed=0), atol=1e-12)
    rounds = json.loads((run_dir / "refine_rounds.json").read_text())
    assert rounds == summary["refine"]["rounds"] and len(rounds) == 2
    assert summary["refine"]["points_per_round"] == [5, 5]
    refined = np.concatenate([np.array(r["coefficients"]) for r in rounds])
    np.testing.assert_allclose(C[12:], refined, atol=1e-6)  # stored in the rounds' order
    real = json.loads((run_dir / f"{names}pareto_front_real.json").read_text())
    assert len(real) == 5 == len(summary["reevaluated"]["real"])
    assert "refine_rounds.json" in info["outputs"]

    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert run_MAP.main(argv) == 0
    assert counter.calls == 0
    again = json.loads((run_dir / "run.json").read_text())
    assert again["changed_since_previous"] == {}
    assert again["summary"]["refine"]["rounds"] == rounds


@pytest.mark.slow
def test_a_sweep_with_default_flags_refines_every_subset(zoo_root, demo_zoo, tmp_path,
                                                        one_thread):
    """--sweep pairs over 3 models, no design or refinement flag: each pair's directory holds
    its LHS design, then its two refinement rounds (map's defaults for 2 tasks)."""
    import run_MAP
    from src.core.sampling import lhs_design

    models = TRIPLE
    small = ["--point", "6", "--refine-points", "2", "--reevaluate", "0", "--n-gen", "30",
             "--max-eval-samples", "60", "--results-path", str(tmp_path)]
    assert run_MAP.main(["--demo", "--zoo-dir", zoo_root, "--sweep", "pairs",
                         "--zeroshot-merge-models", *models, "--exp-id", "sweep", *small]) == 0
    for pair in (models[:2], models[::2], models[1:]):
        names = "_".join(pair)
        run_dir = Path(tmp_path) / "sweep" / names
        info = json.loads((run_dir / "run.json").read_text())
        refine = info["summary"]["refine"]
        assert len(refine["rounds"]) == 2 and all(0 < n <= 2 for n in refine["points_per_round"])
        assert json.loads((run_dir / "refine_rounds.json").read_text()) == refine["rounds"]
        assert info["arguments"]["refine_acquisition"] == "ehvi"
        stored = json.loads((run_dir / f"{names}scaling_results.json").read_text())
        C = np.array([[stored[k]["models"][m] for m in pair] for k in sorted(stored, key=int)])
        assert len(C) == 6 + sum(refine["points_per_round"]) == info["summary"]["n_evaluations"]
        np.testing.assert_allclose(C[:6], lhs_design(2, 6, 0.0, 1.0, seed=0), atol=1e-12)
        # each pair hands over its own model: its coefficients on the pool's zero-padded
        # vector, the third task vector left out
        merge = json.loads((run_dir / "final_model" / "merge.json").read_text())
        assert merge["coefficients"] == info["summary"]["chosen"]["coefficients"]
        check_final_model_file(run_dir, demo_zoo.path, pair)
