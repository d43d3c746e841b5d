"""What a researcher finds in a run directory: only the files of the run that last finished
there (a reused --exp-id removes or rewrites the rest, and run.json says which settings
changed), the evaluation record of every invocation kept across resumes, load_run for every
mode, and one count of the grid's front everywhere."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from map_common.errors import MAPError

PAIR = ["LetterVal", "DigitVal"]
FOUR = ["LetterVal", "DigitVal", "ShapeVal", "SymbolVal"]
NAMES = "_".join(PAIR)
SAMPLES = "150"  # images per dataset: the checks below need no precise accuracy
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def _main(*argv) -> int:
    import run_MAP

    return run_MAP.main([str(a) for a in argv])


def _read(path: Path):
    return json.loads(Path(path).read_text())


def _argv(zoo_root, results, exp_id, method, *extra, models=PAIR) -> list:
    return ["--demo", "--zoo-dir", zoo_root, "--method", method, "--n-gen", 30,
            "--max-eval-samples", SAMPLES, "--zeroshot-merge-models", *models,
            "--results-path", results, "--exp-id", exp_id, *extra]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rundir")


@pytest.fixture(scope="module")
def grid(results, zoo_root):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert _main(*_argv(zoo_root, results, "grid", "grid", "--grid-points-per-axis", 6)) == 0
    return results / "grid", out.getvalue()


@pytest.fixture(scope="module")
def reused(results, zoo_root, grid):
    """One --exp-id: a run with --truth and --baselines, then one without them and with
    another pick (as in the issue), then the same command again (a resume)."""
    import contextlib
    import io

    first = _argv(zoo_root, results, "ta", "map", "--truth", grid[0], "--baselines",
                  "--no-adamerging-baselines", "--reevaluate", "all")
    second = _argv(zoo_root, results, "ta", "map", "--pick", "weighted-sum", "--reevaluate", 3)
    first_out = io.StringIO()
    with contextlib.redirect_stdout(first_out):
        assert _main(*first) == 0
    run_json = [_read(results / "ta" / "run.json")]
    assert _main(*second) == 0
    run_json.append(_read(results / "ta" / "run.json"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert _main(*second) == 0
    run_json.append(_read(results / "ta" / "run.json"))
    return results / "ta", run_json, out.getvalue(), first_out.getvalue()


def test_a_reused_exp_id_keeps_no_file_of_the_previous_run(reused):
    run_dir, (first, second, _), *_ = reused
    for name in ("indicators.json", "baselines.json", "pareto_front_vs_grid.png",
                 "pareto_front_withbaselines.png"):
        assert name in first["outputs"]
        assert not (run_dir / name).exists(), name
        assert name not in second["outputs"]
    on_disk = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    on_disk -= {"run.json"}
    assert on_disk - {".lock"} == set(second["outputs"]) - {".lock"}
    # the re-evaluated front file holds this run's re-evaluated points, no earlier ones
    real = _read(run_dir / f"{NAMES}pareto_front_real.json")
    assert len(real) == 3
    assert "indicators" not in second["summary"]


def test_run_json_says_which_settings_changed(reused):
    _, (first, second, third), *_ = reused
    changed = second["changed_since_previous"]
    assert changed["pick"] == {"previous": "tchebycheff", "now": "weighted-sum"}
    assert changed["reevaluate"] == {"previous": "all", "now": 3}
    assert changed["baselines"] == {"previous": True, "now": False}
    assert changed["truth"]["now"] is None
    assert "exp_id" not in changed
    assert third["changed_since_previous"] == {}
    assert "changed_since_previous" not in first


def test_a_resume_keeps_the_evaluation_record_of_every_invocation(reused):
    _, (first, second, third), printed, _ = reused
    assert third["evaluation"]["points"] == 0  # this invocation evaluated nothing
    history = third["evaluation_history"]
    assert [h["points"] for h in history] == [first["evaluation"]["points"],
                                              second["evaluation"]["points"], 0]
    total = third["evaluation_total"]
    assert total["invocations"] == 3
    assert total["points"] == sum(h["points"] for h in history) > 0
    assert total["forward_seconds"] == pytest.approx(sum(h["forward_seconds"] for h in history))
    assert total["forward_seconds"] > 0
    stored = len(_read(reused[0] / f"{NAMES}scaling_results.json"))
    assert f"resumed: {stored} points stored, 0 to evaluate" in printed.splitlines()[0]


def test_truth_and_baselines_print_the_hv_ratio_and_the_baselines_standing(reused):
    first, printed = reused[1][0], reused[3]
    scores, baselines = first["summary"]["indicators"], first["summary"]["baselines"]
    lines = printed.splitlines()
    row = next(line for line in lines if line.strip().startswith("re-evaluated front points"))
    assert f"{scores['reevaluated']['hv_ratio']:.3f}" in row.split()
    row = next(line for line in lines if line.strip().startswith("+ sampled merges"))
    assert f"{scores['reevaluated_and_sampled']['hv_ratio']:.3f}" in row.split()
    for name, entry in baselines.items():
        if entry["family"] == "TA, lambda sweep":  # its tuned pick stands for it
            assert not any(line.strip().startswith(name + "  ") for line in lines)
            continue
        row = next(line for line in lines if line.strip().startswith(name + "  "))
        assert row.split()[-2] == ("yes" if entry["dominated_by_map"] else "no")
        assert f"{entry['distance_to_map_front']:.4f}" == row.split()[-1]
    assert "HV ratio" not in reused[2]  # the run without --truth prints no table


def test_the_grid_front_is_counted_the_same_everywhere(grid, reused):
    grid_dir, printed = grid
    summary = _read(grid_dir / "run.json")["summary"]
    first_scores = reused[1][0]["summary"]["indicators"]
    merges, distinct = summary["front_merges"], summary["front_distinct_values"]
    assert merges >= distinct
    assert first_scores["truth_front"] == {"merges": merges, "distinct_values": distinct}
    assert first_scores["reevaluated"]["n_truth_front"] == distinct
    assert (f"{merges} merges on the front ({distinct} distinct metric values, "
            "indicators.json's n_truth_front)") in printed


def test_load_run_reads_a_grid_run(grid):
    from src.run.results import load_run

    loaded = load_run(grid[0])
    assert loaded["C"].shape == (36, 2) and loaded["accuracy"].shape == (36, 2)
    front = _read(grid[0] / f"{NAMES}pareto_front_grid.json")
    assert loaded["front_C"].shape == (len(front), 2)
    np.testing.assert_allclose(loaded["front_F"], np.array(list(front.values())))


@pytest.fixture(scope="module")
def nested(results, zoo_root):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert _main(*_argv(zoo_root, results, "nested", "nested", "--point", 8,
                            "--reevaluate", 0, models=FOUR)) == 0
    return results / "nested", out.getvalue()


def test_nested_reports_pretrained_and_chance_and_marks_tasks_below_pretrained(nested):
    run_dir, printed = nested
    final = _read(run_dir / "run.json")["summary"]["final"]
    pretrained, chance = final["pretrained_accuracy"], final["chance_accuracy"]
    assert set(pretrained) == set(chance) == set(FOUR)
    assert chance["LetterVal"] == pytest.approx(1 / 26) and chance["SymbolVal"] == pytest.approx(0.1)
    below = [d for d in FOUR if final["accuracy"][d] < pretrained[d]]
    assert final["below_pretrained"] == below
    lines = {line.split(":")[0].strip(): line for line in printed.splitlines()
             if line.startswith("  ") and "accuracy" in line}
    for d in FOUR:
        assert f"pretrained {pretrained[d]:.4f}" in lines[d]
        assert ("below the pretrained model" in lines[d]) == (d in below)
    assert "nested_summary.png" in _read(run_dir / "run.json")["outputs"]


def test_a_resumed_nested_run_says_what_is_stored(nested, results, zoo_root, capsys):
    capsys.readouterr()
    assert _main(*_argv(zoo_root, results, "nested", "nested", "--point", 8,
                        "--reevaluate", 0, models=FOUR)) == 0
    first = capsys.readouterr().out.splitlines()[0]
    # 4 fine-tuned models, TA's sweep (10), 3 pairs of 8 points, the pretrained model
    assert first == f"resumed: {4 + 10 + 3 * 8 + 1} points stored, 0 to evaluate"


def test_load_run_reads_a_nested_run(nested, results):
    from src.run.results import load_run

    loaded = load_run(results / "nested")
    tree = _read(results / "nested" / "merge_tree.json")
    assert loaded["tree"] == tree
    assert len(loaded["pairs"]) == len(tree["rounds"]) == 3
    for pair in loaded["pairs"]:
        assert pair["C"].shape == (8, 2) and pair["front_C"].shape[1] == 2
        assert set(pair["surrogates"]) == set(pair["labels"])
    final = _read(results / "nested" / "final_model" / "merge.json")
    assert loaded["final"]["coefficients"] == final["coefficients"]
    assert loaded["final"]["accuracy"] == final["accuracy"]
    # TA's sweep (the context and floor of 4 tasks): c = λ·1, every task, as stored
    ta = loaded["task_arithmetic"]
    sweep = _read(results / "nested" / "task_arithmetic_scaling_results.json")
    assert ta["C"].shape == (10, 4) and ta["accuracy"].shape == (10, 4)
    np.testing.assert_allclose(ta["C"], np.outer(np.arange(1, 11) / 10, np.ones(4)))
    for row, entry in zip(range(10), sweep.values()):
        assert list(ta["accuracy"][row]) == [entry["evals"][d]["accuracy"]
                                             for d in tree["datasets"]]
        assert list(ta["entropy"][row]) == [entry["evals"][d]["entropy"]
                                            for d in tree["datasets"]]
    assert tree["context"]["lambda"] in ta["C"][:, 0]


def test_load_run_of_a_nested_run_with_an_edited_merge_record_is_one_line(nested, results,
                                                                          tmp_path):
    import shutil

    from src.run.results import load_run

    edited = tmp_path / "edited"
    shutil.copytree(results / "nested", edited)
    (edited / "final_model" / "merge.json").write_text('"nested tree"')
    with pytest.raises(MAPError, match="merge.json: expected an object .* found str"):
        load_run(edited)


def test_load_run_refuses_an_unknown_run_in_one_line(tmp_path):
    from src.run.results import load_run

    (tmp_path / "run.json").write_text(json.dumps({"method": "other", "models": ["A", "B"],
                                                   "datasets": ["A", "B"]}))
    with pytest.raises(MAPError, match=r"^.*run.json: a --method other run; load_run reads "):
        load_run(tmp_path)


def test_grid_front_keys_are_written_at_the_grid_s_precision(grid):
    import re

    front = _read(grid[0] / f"{NAMES}pareto_front_grid.json")
    store = _read(grid[0] / f"{NAMES}scaling_results.json")
    for key in front:  # 6 points per axis over [0, 1]: steps of 0.2, one decimal
        assert re.fullmatch(r"\[\d\.\d, \d\.\d\]", key), key
    # the values stay exact: each key's values are the stored point's
    stored = {tuple(round(e["models"][m], 9) for m in PAIR):
              [e["evals"][d]["accuracy"] for d in PAIR] for e in store.values()}
    for key, values in front.items():
        assert stored[tuple(json.loads(key))] == values


def test_stale_outputs_are_removed_inside_the_run_directory_only(tmp_path):
    from src.run.outputs import remove_stale_outputs

    run_dir, outside = tmp_path / "run", tmp_path / "keep.txt"
    run_dir.mkdir()
    for name in ("old.png", "old.pdf", "new.png", "Ascaling_results.json", "fingerprint.json"):
        (run_dir / name).write_text("x")
    outside.write_text("x")
    previous = {n: "" for n in ("old.png", "new.png", "Ascaling_results.json",
                                "fingerprint.json", "../keep.txt", "round1/")}
    assert remove_stale_outputs(run_dir, previous, {"new.png": ""}) == ["old.png"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["Ascaling_results.json",
                                                         "fingerprint.json", "new.png"]
    assert outside.exists()


def test_a_damaged_run_record_is_set_aside_and_a_damaged_fingerprint_refused(
        zoo_root, tmp_path, capsys):
    """The previous run's run.json is read once the run has finished: a damaged one must not
    fail it (its settings, files and history are not carried over, with a line). A damaged
    fingerprint is refused at the start, in one line."""
    argv = _argv(zoo_root, tmp_path, "d", "map", "--design", "grid", "--refine-rounds", "0")
    assert _main(*argv) == 0
    run_dir = tmp_path / "d"
    for text, why in (("[1]", "not a run record"), ('{"arguments": 5}', "not a run record"),
                      ('{"a":', "not valid JSON")):
        (run_dir / "run.json").write_text(text)
        capsys.readouterr()
        assert _main(*argv) == 0
        out = capsys.readouterr().out
        assert f"{run_dir / 'run.json'}: the previous run's record is {why}" in out
        info = _read(run_dir / "run.json")
        assert info["evaluation_total"]["invocations"] == 1 and "changed_since_previous" \
            not in info
    # a history entry edited by hand is left out, the rest kept
    info = _read(run_dir / "run.json")
    info["evaluation_history"].append({"points": "x"})
    (run_dir / "run.json").write_text(json.dumps(info))
    assert _main(*argv) == 0
    assert _read(run_dir / "run.json")["evaluation_total"]["invocations"] == 2

    (run_dir / "fingerprint.json").write_text("[1]")
    capsys.readouterr()
    assert _main(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{run_dir / 'fingerprint.json'}: not a fingerprint" in err[0]
