"""--method nested (the default) on the demo zoo, end to end: the merge tree and its
per-round folders, the final model file against θ_pre + Σ c_i τ_i computed from the zoo's
checkpoints, accuracies against an independent engine, a JSON preference file, 8 tasks,
and resuming a killed run by replaying its stored rounds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from src.core.nested import SEGMENT_STEPS
from src.core.pareto import pick
from helpers import (FEW_IMAGES, CountingEvaluate, check_final_model_file, files_but_lock,
                     no_loading)

REPO = Path(__file__).resolve().parent.parent
FOUR = ["LetterVal", "DigitVal", "ShapeVal", "SymbolVal"]  # the --demo default for nested
EIGHT = ["LetterVal", "DigitVal", "ShapeVal", "ColorVal", "TextureVal", "PositionVal",
         "ArrowVal", "SymbolVal"]
PREFERENCE_8 = {"LetterVal": 2.0, "DigitVal": 1.0, "ShapeVal": 1.0, "ColorVal": 0.5,
                "TextureVal": 1.0, "PositionVal": 1.0, "ArrowVal": 1.5, "SymbolVal": 1.0}
N_GEN = "50"
PAIR_POINTS = 20  # the default --point per pair
SWEEP = 10  # task arithmetic's sweep, λ = 0.1..1.0 (src.core.local_design.DIAGONAL_STEPS)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")  # the demo model is tiny


def _main(*argv) -> int:
    import run_MAP

    return run_MAP.main([str(a) for a in argv])


def _read(path: Path):
    return json.loads(Path(path).read_text())


def _front(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = _read(path)
    return np.array([json.loads(k) for k in data], dtype=float), np.array(list(data.values()))


def _default_argv(zoo_root: str, results: Path, exp_id: str) -> list:
    # `python run_MAP.py --demo`, in its own results folder, with a shorter search and fewer
    # images (accuracies are checked against an engine with the same cap).
    return ["--demo", "--zoo-dir", zoo_root, "--n-gen", N_GEN, "--max-eval-samples",
            FEW_IMAGES, "--results-path", results, "--exp-id", exp_id]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nested_results")


@pytest.fixture(scope="module")
def run4(results, zoo_root) -> Path:
    assert _main(*_default_argv(zoo_root, results, "four")) == 0
    return results / "four"


@pytest.fixture(scope="module")
def run8(results, zoo_root) -> Path:
    pref = results / "preference.json"
    pref.write_text(json.dumps(PREFERENCE_8))
    assert _main("--demo", "--zoo-dir", zoo_root, "--n-gen", N_GEN, "--point", 10,
                 "--max-eval-samples", FEW_IMAGES, "--zeroshot-merge-models", *EIGHT, "--preference", pref,
                 "--results-path", results, "--exp-id", "eight") == 0
    return results / "eight"


def _engine(demo_zoo, tasks):
    """An engine of our own on the zoo's files, tasks in the run's order."""
    from task_vectors.engine import MergeEngine

    zoo = demo_zoo.path
    return MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zoo / "zeroshot.pt"),
        finetuned={m: str(zoo / m / "finetuned.pt") for m in tasks},
        heads={d: str(zoo / f"head_{d}.pt") for d in tasks}, datasets=tasks,
        data_location=str(zoo), batch_size=128, max_eval_samples=FEW_IMAGES)


@pytest.fixture(scope="module")
def engine4(demo_zoo):
    return _engine(demo_zoo, FOUR)


@pytest.fixture(scope="module")
def engine8(demo_zoo):
    return _engine(demo_zoo, EIGHT)


# ------------------------------------------------------------------ checks shared by 4 and 8
def check_tree_and_rounds(run_dir: Path, tasks: list[str], preference: dict[str, float],
                          n_points: int, rule: str) -> None:
    tree = _read(run_dir / "merge_tree.json")
    assert tree["models"] == tasks and tree["datasets"] == tasks
    assert tree["preference"] == preference
    rounds = tree["rounds"]
    assert [r["round"] for r in rounds] == list(range(len(tasks) - 1))
    assert sorted(rounds[-1]["tasks"]) == sorted(tasks)  # the last merge holds every task
    for r, rec in enumerate(rounds):
        left, right = rec["left"], rec["right"]
        assert rec["left_preference"] == pytest.approx(
            sum(preference[t] for t in rec["left_tasks"]))
        assert rec["right_preference"] == pytest.approx(
            sum(preference[t] for t in rec["right_tasks"]))
        c = np.array(rec["pair_coefficients"])
        np.testing.assert_allclose(rec["coefficients"], c[0] * np.array(
            rec["left_coefficients"]) + c[1] * np.array(rec["right_coefficients"]), atol=1e-12)
        assert set(rec["measured"]) == set(rec["left_tasks"]) | set(rec["right_tasks"])

        folder = run_dir / f"round{r + 1}"
        names = f"{left}_{right}"
        scaling = _read(folder / f"{names}scaling_results.json")
        assert len(scaling) == n_points
        assert all(list(e["models"]) == [left, right] for e in scaling.values())
        assert all(set(e["evals"]) == set(rec["measured"]) for e in scaling.values())
        params = _read(folder / f"{names}_surrogates.json")
        assert set(params) == {left, right}
        assert (folder / "pareto_front.png").read_bytes()[:8] == PNG_MAGIC
        # The pair's pick is the preference pick of the pair's stored front.
        C, F = _front(folder / f"{names}pareto_front.json")
        chosen = _read(folder / "chosen.json")
        weights = [rec["left_preference"], rec["right_preference"]]
        assert chosen["preference"] == pytest.approx(weights)
        # the default: weighted-sum with the TA floor (from 4 tasks), else tchebycheff
        assert chosen["pick"] == rule
        k = pick(F, weights, ["max", "max"], rule, chosen["anchors"]["worst"],
                 chosen["anchors"]["best"])
        np.testing.assert_allclose(chosen["pair_coefficients"], C[k], atol=1e-12)
        np.testing.assert_allclose(rec["pair_coefficients"], C[k], atol=1e-12)

    for name in ("merge_tree.png", "nested_summary.png"):
        assert (run_dir / name).read_bytes()[:8] == PNG_MAGIC
    merge = _read(run_dir / "final_model" / "merge.json")
    assert list(merge["coefficients"]) == tasks
    floor = _read(run_dir / "run.json")["summary"]["final"].get("floor")
    if floor is None or floor["handed_over"] == "nested tree":
        np.testing.assert_allclose(list(merge["coefficients"].values()),
                                   rounds[-1]["coefficients"], atol=1e-12)
        assert merge["accuracy"] == rounds[-1]["measured"]
    else:  # the floor handed over an evaluated merge at or above task arithmetic
        np.testing.assert_allclose(list(merge["coefficients"].values()),
                                   floor["model"]["coefficients"], atol=1e-12)
        assert merge["accuracy"] == floor["model"]["accuracy"]


def context_of(run_dir: Path) -> float | None:
    """The λ the other task vectors sat at while each pair was merged (None: 0)."""
    return _read(run_dir / "merge_tree.json")["context"]["lambda"]


def in_context(coefficients, tasks: list[str], inside, lam: float | None) -> np.ndarray:
    c = np.asarray(coefficients, dtype=float)
    if lam is None:
        return c
    return np.array([c[k] if t in inside else lam for k, t in enumerate(tasks)])


def check_accuracies_are_measured(run_dir: Path, engine, tasks: list[str]) -> None:
    tree = _read(run_dir / "merge_tree.json")
    merge = _read(run_dir / "final_model" / "merge.json")
    eye = np.eye(len(tasks))
    for i, t in enumerate(tasks):
        single = engine.evaluate_at(eye[i], [t])[t]["accuracy"]
        assert tree["single_accuracy"][t] == single
        assert merge["single_task_accuracy"][t] == single
    lam = context_of(run_dir)
    for rec in tree["rounds"]:
        c = in_context(rec["coefficients"], tasks, rec["measured"], lam)
        evals = engine.evaluate_at(c, list(rec["measured"]))
        assert rec["measured"] == {t: evals[t]["accuracy"] for t in rec["measured"]}
    # a pair's design points too were merged beside the other task vectors at λ
    rec = tree["rounds"][0]
    names = f"{rec['left']}_{rec['right']}"
    entry = next(iter(_read(run_dir / "round1" / f"{names}scaling_results.json").values()))
    pair = np.array(list(entry["models"].values()))
    own = pair[0] * np.array(rec["left_coefficients"]) + pair[1] * np.array(
        rec["right_coefficients"])
    evals = engine.evaluate_at(in_context(own, tasks, rec["measured"], lam),
                               list(rec["measured"]))
    assert {t: e["accuracy"] for t, e in entry["evals"].items()} == \
        {t: evals[t]["accuracy"] for t in rec["measured"]}


# ------------------------------------------------------------------ 4 tasks (the default)
@pytest.mark.slow
def test_default_demo_merges_four_tasks(run4):
    run = _read(run4 / "run.json")
    assert run["method"] == "nested" and run["models"] == FOUR
    check_tree_and_rounds(run4, FOUR, {t: 1.0 for t in FOUR}, PAIR_POINTS, "weighted-sum")
    # fine-tuned models, TA's sweep, each pair's design and its merge (and, when the tree's
    # model is below TA, the merges between the two)
    below = not run["summary"]["final"]["floor"]["tree"]["at_or_above"]
    assert run["summary"]["n_evaluations"] == 4 + SWEEP + 3 * (PAIR_POINTS + 1) + 3 * below
    assert (run4 / "segment_scaling_results.json").exists() == below
    # From 4 tasks: the pairs beside the others at TA's best λ, the final model held
    # against TA (args.default_nested_context, default_pick_floor).
    assert run["arguments"]["nested_context"] == "task-arithmetic"
    assert run["arguments"]["pick_floor"] == "task-arithmetic"
    sweep = _read(run4 / "task_arithmetic_scaling_results.json")
    assert len(sweep) == SWEEP
    means = {e["models"]["LetterVal"]: np.mean([v["accuracy"] for v in e["evals"].values()])
             for e in sweep.values()}
    assert all(len(set(e["models"].values())) == 1 for e in sweep.values())  # c = λ·1
    lam = max(means, key=means.get)
    assert context_of(run4) == lam
    floor = run["summary"]["final"]["floor"]
    assert floor["task_arithmetic"]["lambda"] == lam
    assert floor["task_arithmetic"]["mean"] == pytest.approx(means[lam], abs=1e-12)
    tree = _read(run4 / "merge_tree.json")["rounds"][-1]["measured"]
    above = (np.mean(list(tree.values())) >= floor["task_arithmetic"]["mean"] - 1e-9
             and min(tree.values()) >= floor["task_arithmetic"]["worst"] - 1e-9)
    assert floor["tree"]["at_or_above"] == above
    assert (floor["handed_over"] == "nested tree") == above
    assert _read(run4 / "final_model" / "merge.json")["source"] == floor["handed_over"]


@pytest.mark.slow
def test_four_task_final_model_file_is_the_merge_of_the_zoo(run4, demo_zoo):
    check_final_model_file(run4, demo_zoo.path, FOUR)


@pytest.mark.slow
def test_four_task_accuracies_are_measured(run4, engine4):
    check_accuracies_are_measured(run4, engine4, FOUR)


# ------------------------------------------------------------------ 8 tasks, JSON preference
@pytest.mark.slow
def test_eight_task_demo_merges_all_eight_with_a_json_preference(run8):
    check_tree_and_rounds(run8, EIGHT, PREFERENCE_8, 10, "weighted-sum")
    merge = _read(run8 / "final_model" / "merge.json")
    assert set(merge["accuracy"]) == set(EIGHT)


@pytest.mark.slow
def test_eight_task_final_model_file_is_the_merge_of_the_zoo(run8, demo_zoo):
    check_final_model_file(run8, demo_zoo.path, EIGHT)


@pytest.mark.slow
def test_eight_task_accuracies_are_measured(run8, engine8):
    check_accuracies_are_measured(run8, engine8, EIGHT)


# ------------------------------------------------------------------ resume
@pytest.mark.slow
def test_killed_run_resumes_by_replaying_stored_rounds(run4, results, zoo_root, monkeypatch,
                                                        capsys):
    import src.modes.nested_mode as nested_mode
    from task_vectors.engine import MergeEngine

    original = MergeEngine.evaluate
    argv = _default_argv(zoo_root, results, "resume")
    run_dir = results / "resume"

    # singles, TA's sweep, level 0 (rounds 1 and 2: designs, then both measurements), 3
    # points of round 3
    k = 4 + SWEEP + 2 * (PAIR_POINTS + 1) + 3
    monkeypatch.setattr(MergeEngine, "evaluate", CountingEvaluate(original, stop_after=k))
    assert _main(*argv) == 130
    assert "Traceback" not in capsys.readouterr().err
    assert len(_read(run_dir / "merge_tree.json")["rounds"]) == 2

    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    pairs_run = []
    fit_pair = nested_mode._fit_pair
    monkeypatch.setattr(nested_mode, "_fit_pair",
                        lambda ctx, a, b, r, *rest: pairs_run.append(r) or
                        fit_pair(ctx, a, b, r, *rest))
    assert _main(*argv) == 0
    assert pairs_run == [2]  # level 0 (rounds 1 and 2) was replayed, not run again
    total = 4 + SWEEP + 3 * (PAIR_POINTS + 1) + 1  # + the pretrained model
    assert counter.calls == total - k

    # Same tree and final model as the run that was never interrupted.
    tree, full = _read(run_dir / "merge_tree.json"), _read(run4 / "merge_tree.json")
    strip = [{key: v for key, v in rec.items() if key != "info"} for rec in tree["rounds"]]
    assert strip == [{key: v for key, v in rec.items() if key != "info"} for rec in full["rounds"]]
    assert _read(run_dir / "final_model" / "merge.json") == \
        _read(run4 / "final_model" / "merge.json")

    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    pairs_run.clear()
    assert _main(*argv) == 0
    assert counter.calls == 0 and pairs_run == []


# ------------------------------------------------------------------ context and floor
@pytest.mark.slow
def test_without_context_each_pair_is_merged_alone(results, zoo_root, engine4):
    """--nested-context none --pick-floor pretrained: the original's tree, no TA sweep."""
    argv = _default_argv(zoo_root, results, "alone")
    assert _main(*argv, "--nested-context", "none", "--pick-floor", "pretrained") == 0
    run_dir = results / "alone"
    run = _read(run_dir / "run.json")
    assert run["summary"]["n_evaluations"] == 4 + 3 * (PAIR_POINTS + 1)
    assert "floor" not in run["summary"]["final"]
    assert not (run_dir / "task_arithmetic_scaling_results.json").exists()
    assert context_of(run_dir) is None
    check_accuracies_are_measured(run_dir, engine4, FOUR)


@pytest.mark.slow
def test_a_final_model_below_the_floor_is_not_handed_over(run4, results, zoo_root, demo_zoo,
                                                          monkeypatch, capsys):
    """A floor no merge reaches (patched): the merges between the tree's final model and TA
    are evaluated (3; the rounds replay), and the tree's model is replaced by the pick
    rule's best evaluated merge over every task (those, TA's sweep, the last round's design),
    whose weights the final model file holds; a rerun evaluates nothing."""
    import shutil

    import src.modes.nested_mode as nested_mode
    from task_vectors.engine import MergeEngine

    shutil.copytree(run4, results / "floored")
    monkeypatch.setattr(nested_mode, "ta_floor", lambda *a, **k: (1.0, 1.0))
    drawn = {}
    summary_plot = nested_mode.plotting.plot_nested_summary
    monkeypatch.setattr(nested_mode.plotting, "plot_nested_summary",
                        lambda *a, **k: drawn.update(k) or summary_plot(*a, **k))
    counter = CountingEvaluate(MergeEngine.evaluate)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert _main(*_default_argv(zoo_root, results, "floored")) == 0
    assert counter.calls == len(SEGMENT_STEPS) == 3
    assert _main(*_default_argv(zoo_root, results, "floored")) == 0
    assert counter.calls == 3  # stored: the rerun evaluates nothing
    out = capsys.readouterr().out
    run_dir = results / "floored"
    run = _read(run_dir / "run.json")
    floor = run["summary"]["final"]["floor"]
    assert floor["segment"] == {"steps": list(SEGMENT_STEPS), "evaluations": 3}
    assert run["summary"]["n_evaluations"] == 4 + SWEEP + 3 * (PAIR_POINTS + 1) + 3
    rec = _read(run_dir / "merge_tree.json")["rounds"][-1]
    lam = floor["task_arithmetic"]["lambda"]
    segment = _read(run_dir / "segment_scaling_results.json")
    np.testing.assert_allclose(
        [list(e["models"].values()) for e in segment.values()],
        [(1 - t) * np.array(rec["coefficients"]) + t * lam for t in SEGMENT_STEPS], atol=1e-12)
    from src.run.results import load_run

    loaded = load_run(run_dir)["segment"]  # load_run gives them back as points
    np.testing.assert_allclose(loaded["C"], [list(e["models"].values()) for e in segment.values()])
    assert loaded["accuracy"].tolist() == [[e["evals"][d]["accuracy"] for d in FOUR]
                                           for e in segment.values()]
    assert floor["tree"]["at_or_above"] is False and floor["handed_over"] != "nested tree"
    assert "the tree's final model is not" in out and "is handed over" in out
    c = floor["model"]["coefficients"]
    merge = _read(run_dir / "final_model" / "merge.json")
    assert merge["source"] == floor["handed_over"]  # merge.json says it is not the tree's
    np.testing.assert_allclose(list(merge["coefficients"].values()), c, atol=1e-12)
    # the handed-over merge is one the run evaluated on every task (the merges between the
    # tree and TA, TA's sweep, the last round's design, the pretrained model), with those
    # accuracies
    sweep = [e for name in ("segment", "task_arithmetic", "pretrained")
             for e in _read(run_dir / f"{name}_scaling_results.json").values()]
    design = _read(run_dir / "round3" / f"{rec['left']}_{rec['right']}scaling_results.json")
    evaluated = [(list(e["models"].values()), e["evals"]) for e in sweep] + [
        ((p[0] * np.array(rec["left_coefficients"]) + p[1] * np.array(
            rec["right_coefficients"])).tolist(), e["evals"])
        for e in design.values() for p in [list(e["models"].values())]]
    hit = [ev for coeffs, ev in evaluated if np.allclose(coeffs, c, atol=1e-12)]
    assert hit and merge["accuracy"] == {d: hit[0][d]["accuracy"] for d in FOUR}
    check_final_model_file(run_dir, demo_zoo.path, FOUR)
    # nested_summary.png draws TA at its best λ beside the model handed over
    ta = next(e["evals"] for e in sweep if list(e["models"].values()) == [lam] * 4)
    assert drawn["reference"] == {d: ta[d]["accuracy"] for d in FOUR}
    assert drawn["reference_label"] == f"task arithmetic, λ = {lam:g}"


@pytest.mark.slow
def test_stored_rounds_of_another_context_are_refused_in_one_line(run4, results, zoo_root,
                                                                  capsys):
    """Rounds merged beside TA's λ are not replayed as rounds merged alone (nor beside
    another λ): their picks and stored points would be another tree's."""
    import shutil

    shutil.copytree(run4, results / "other_context")
    run_dir = results / "other_context"
    before = files_but_lock(run_dir)
    argv = _default_argv(zoo_root, results, "other_context")
    capsys.readouterr()
    assert _main(*argv, "--nested-context", "none") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its pairs were merged with --nested-context task-arithmetic, " \
        "this run asks for none; use another --exp-id" in err[0]
    assert files_but_lock(run_dir) == before
    # other --bounds: refused before the models are loaded (the tree records its bounds)
    import src.modes.common as common

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "open_evaluator", no_loading)
        assert _main(*argv, "--bounds", "0", "0.8") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its pairs were merged with --bounds 0 1, this run asks for 0 " \
        "0.8; use another --exp-id" in err[0]
    assert files_but_lock(run_dir) == before
    tree = _read(run_dir / "merge_tree.json")
    assert tree["bounds"] == [0.0, 1.0]
    del tree["bounds"]  # a tree written before the bounds were recorded
    tree["context"]["lambda"] = 0.7
    (run_dir / "merge_tree.json").write_text(json.dumps(tree))
    assert _main(*argv) == 2  # known once the (stored) sweep is read: after the loading bars
    err = capsys.readouterr().err
    assert "Traceback" not in err and "beside task arithmetic's lambda 0.7, this run's sweep " \
        f"gives {context_of(run4)}; use another --exp-id" in err.strip().splitlines()[-1]


@pytest.mark.slow
def test_stored_rounds_picked_another_way_are_refused_before_loading(run4, results, zoo_root,
                                                                     capsys):
    """A resume replays the stored rounds as its own picks, so another preference, pick
    rule, design size, search or seed is refused in one line before the models are loaded
    (the same tree with its preference changed used to be handed over as the new one's)."""
    import shutil

    import src.modes.common as common

    shutil.copytree(run4, results / "other_choice")
    run_dir = results / "other_choice"
    skewed = results / "skewed.yaml"
    skewed.write_text("LetterVal: 3\nDigitVal: 1\nShapeVal: 1\nSymbolVal: 1\n")
    argv = _default_argv(zoo_root, results, "other_choice")
    before = files_but_lock(run_dir)
    for extra, said in ((["--preference", skewed], "--preference LetterVal:0.25 DigitVal:0.25 "
                         "ShapeVal:0.25 SymbolVal:0.25; this run asks for --preference "
                         "LetterVal:0.5 DigitVal:0.1667 ShapeVal:0.1667 SymbolVal:0.1667"),
                        (["--pick", "tchebycheff"], "--pick weighted-sum; this run asks for "
                         "--pick tchebycheff"),
                        (["--seed", "1"], "--seed 0; this run asks for --seed 1"),
                        (["--n-gen", "7"], f"--n-gen {N_GEN}; this run asks for --n-gen 7"),
                        (["--point", "9"], f"--point {PAIR_POINTS}; this run asks for --point 9"),
                        (["--search-bounds", "0", "0.9"], "--search-bounds 0 1; this run asks "
                         "for --search-bounds 0 0.9")):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(common, "open_evaluator", no_loading)
            assert _main(*argv, *extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"its rounds were picked with {said}. Resume with the same " \
            "flags, or use another --exp-id" in err[0], (extra, err)
        assert files_but_lock(run_dir) == before
    # a tree written before the choice was recorded: its preference still refuses
    tree = _read(run_dir / "merge_tree.json")
    assert tree["choice"]["seed"] == 0 and tree["choice"]["pair_points"] == PAIR_POINTS
    del tree["choice"]
    (run_dir / "merge_tree.json").write_text(json.dumps(tree))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "open_evaluator", no_loading)
        assert _main(*argv, "--preference", skewed) == 2
    assert "its rounds were picked with --preference" in capsys.readouterr().err
    # equal weights on another scale are the same choice: the resume replays the tree
    scaled = results / "scaled.yaml"
    scaled.write_text("LetterVal: 2\nDigitVal: 2\nShapeVal: 2\nSymbolVal: 2\n")
    assert _main(*argv, "--preference", scaled) == 0
    assert _read(run_dir / "merge_tree.json")["rounds"] == tree["rounds"]


@pytest.mark.parametrize("text", ['{"rounds": 3}', '[1, 2]', '{"rounds": [1]}'])
def test_a_damaged_merge_tree_is_one_line_before_loading(text, zoo_root, tmp_path,
                                                         monkeypatch, capsys):
    import src.modes.common as common

    run_dir = tmp_path / "d"
    run_dir.mkdir()
    (run_dir / "merge_tree.json").write_text(text)
    monkeypatch.setattr(common, "open_evaluator", no_loading)
    assert _main(*_default_argv(zoo_root, tmp_path, "d")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{run_dir / 'merge_tree.json'}: not a merge tree" in err[0]
