"""--report-test: the model a run hands over, task arithmetic and the pretrained model scored
on each evaluation dataset's test split (<Dataset> for <Dataset>Val, the same head), against
an engine of the test's own on the zoo's files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import FEW_IMAGES, PLAIN_MAP, CountingEvaluate, zoo_engine
from src.run.report_on_test import lines, summarise, test_datasets as split_names

PAIR = ["LetterVal", "DigitVal"]
TEST = {"LetterVal": "Letter", "DigitVal": "Digit"}


def _read(path: Path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def test_engine(demo_zoo):
    """Our own engine on the zoo's files: the test splits, each with its Val set's head."""
    return zoo_engine(demo_zoo, PAIR, heads={t: d for d, t in TEST.items()},
                      batch_size=128, max_eval_samples=FEW_IMAGES)


def _check_scores(report: dict, engine, expected: dict[str, list[float]]) -> None:
    assert report["datasets"] == TEST
    assert list(report["models"]) == list(expected)
    for name, c in expected.items():
        row = report["models"][name]
        assert list(row["coefficients"].values()) == pytest.approx(c, abs=1e-12)
        direct = engine.evaluate_at(np.asarray(c), list(TEST.values()))
        assert row["accuracy"] == {t: direct[t]["accuracy"] for t in TEST.values()}
        assert row["loss"] == pytest.approx({t: direct[t]["loss"] for t in TEST.values()})
        acc = list(row["accuracy"].values())
        assert row["mean"] == pytest.approx(np.mean(acc)) and row["worst"] == min(acc)


def test_map_scores_its_pick_ta_and_pretrained_on_the_test_splits(zoo_root, tmp_path, run_cli,
                                                                  capsys, test_engine,
                                                                  monkeypatch):
    argv = ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--n-gen", "20",
            "--reevaluate", "2", "--max-eval-samples", FEW_IMAGES, *PLAIN_MAP,
            "--report-test", "--results-path", tmp_path, "--exp-id", "m"]
    assert run_cli(*argv) == 0
    printed = capsys.readouterr().out.splitlines()
    summary = _read(tmp_path / "m" / "run.json")["summary"]
    check = summary["pick_check"]
    ta = check["task_arithmetic"]
    label = f"task arithmetic, lambda {ta['lambda']:.3g}"
    _check_scores(summary["test"], test_engine, {
        "handed over": [summary["chosen"]["coefficients"][m] for m in PAIR],
        label: [ta["coefficients"][m] for m in PAIR], "pretrained": [0.0, 0.0]})
    # the validation figures stay the run's own: the test splits are only reported
    assert summary["chosen"]["real"] == check["pick"]["real"]
    rows = summary["test"]["models"]
    assert summary["test"]["below_task_arithmetic"] == [
        m for m in ("mean", "worst") if rows["handed over"][m] < rows[label][m]]
    table = lines(summary["test"])
    start = printed.index(table[0])
    assert printed[start:start + len(table)] == table
    assert table[1].split() == ["mean", "worst", "Letter", "Digit"]

    # the scores are kept: the same command again evaluates nothing, test splits included
    name = "LetterVal_DigitVal_test_scaling_results.json"
    stored = _read(tmp_path / "m" / name)
    assert len(stored) == 3 and all(set(v["evals"]) == set(TEST.values()) for v in stored.values())
    assert name in _read(tmp_path / "m" / "run.json")["outputs"]
    from task_vectors.engine import MergeEngine

    counter = CountingEvaluate(MergeEngine.evaluate)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert run_cli(*argv) == 0
    assert counter.calls == 0
    assert _read(tmp_path / "m" / "run.json")["summary"]["test"] == summary["test"]


def test_nested_scores_its_final_model(zoo_root, tmp_path, run_cli, test_engine):
    assert run_cli("--demo", "--zoo-dir", zoo_root, "--method", "nested",
                   "--zeroshot-merge-models", *PAIR, "--point", "6", "--n-gen", "10",
                   "--max-eval-samples", FEW_IMAGES, "--report-test",
                   "--results-path", tmp_path, "--exp-id", "n") == 0
    summary = _read(tmp_path / "n" / "run.json")["summary"]
    final = _read(tmp_path / "n" / "final_model" / "merge.json")["coefficients"]
    _check_scores(summary["test"], test_engine, {
        "handed over": [final[m] for m in PAIR], "pretrained": [0.0, 0.0]})


def test_adamerging_scores_the_learned_model_on_images_it_did_not_learn_from(
        zoo_root, tmp_path, run_cli, test_engine, demo_zoo, monkeypatch):
    """The learned model (read back from its final_model file), its start (TA at the prior)
    and the pretrained model, on the test splits; a run killed while scoring them resumes
    with what is missing, and the same command again scores nothing."""
    from task_vectors.engine import MergeEngine

    argv = ["--demo", "--zoo-dir", zoo_root, "--method", "adamerging",
            "--zeroshot-merge-models", *PAIR, "--adamerging-steps", "3",
            "--adamerging-lr", "0.05", "--max-eval-samples", FEW_IMAGES,
            "--report-test", "--results-path", tmp_path, "--exp-id", "a"]

    def run_counting(*extra: str, stop_after: int | None = None) -> tuple[int, int]:
        counting = CountingEvaluate(MergeEngine.evaluate, stop_after)
        with monkeypatch.context() as m:
            m.setattr(MergeEngine, "evaluate", counting)
            return run_cli(*argv, *extra), counting.calls

    # validation: pretrained, TA at the prior, 2 fine-tuned, learned (5); test: learned,
    # then killed before TA at the prior
    assert run_counting(stop_after=6) == (130, 6)
    assert run_counting() == (0, 2)  # TA at the prior and the pretrained model, test splits
    report = _read(tmp_path / "a" / "run.json")["summary"]["test"]
    assert run_counting() == (0, 0)
    assert _read(tmp_path / "a" / "run.json")["summary"]["test"] == report
    assert _read(tmp_path / "a" / "adamerging_evaluations.json")["scores"]["learned"].keys() \
        == {*PAIR, *TEST.values()}
    rows = report["models"]
    assert list(rows) == ["handed over", "task arithmetic, lambda 0.3", "pretrained"]
    for name, c in (("task arithmetic, lambda 0.3", [0.3, 0.3]), ("pretrained", [0.0, 0.0])):
        direct = test_engine.evaluate_at(np.asarray(c), list(TEST.values()))
        assert rows[name]["accuracy"] == {t: direct[t]["accuracy"] for t in TEST.values()}
    learned = zoo_engine(demo_zoo, PAIR, heads={t: d for d, t in TEST.items()},
                         pretrained=str(tmp_path / "a" / "final_model" / "finetuned.pt"),
                         batch_size=128, max_eval_samples=FEW_IMAGES)
    direct = learned.evaluate_at(np.zeros(2), list(TEST.values()))  # the file itself
    assert rows["handed over"]["accuracy"] == pytest.approx(
        {t: direct[t]["accuracy"] for t in TEST.values()}, abs=1e-9)
    # learning continued: only the learned model is scored again, on both splits
    assert run_counting("--adamerging-steps", "4") == (0, 2)
    assert _read(tmp_path / "a" / "run.json")["summary"]["test"]["models"]["pretrained"] \
        == rows["pretrained"]


def test_only_val_sets_have_a_test_split():
    assert split_names(["MNISTVal", "LetterVal"]) == {"MNISTVal": "MNIST", "LetterVal": "Letter"}
    for bad in (["MNIST"], ["Val"]):
        with pytest.raises(Exception, match="no separate test split"):
            split_names(bad)


def test_the_table_says_where_the_pick_is_below_task_arithmetic():
    test_of = {"AVal": "A", "BVal": "B"}

    def evals(a, b):
        return {"A": {"accuracy": a, "loss": 1.0}, "B": {"accuracy": b, "loss": 1.0}}

    report = summarise({"handed over": evals(0.70, 0.60), "task arithmetic, lambda 0.3":
                        evals(0.50, 0.85), "pretrained": evals(0.3, 0.4)}, test_of, [1.0, 3.0],
                       {"handed over": {}, "task arithmetic, lambda 0.3": {}, "pretrained": {}})
    assert report["models"]["handed over"]["mean"] == pytest.approx(0.625)  # weighted 1 : 3
    assert report["below_task_arithmetic"] == ["mean"]  # 0.625 < 0.7625; worst 0.6 > 0.5
    assert lines(report)[-1] == ("  On the test splits the model handed over is below task "
                                 "arithmetic on the mean.")
    level = summarise({"handed over": evals(0.5, 0.85), "task arithmetic, lambda 0.3":
                       evals(0.5, 0.85)}, test_of, [1.0, 1.0], {"handed over": {},
                       "task arithmetic, lambda 0.3": {}})
    assert level["below_task_arithmetic"] == []
    assert not lines(level)[-1].lstrip().startswith("On the test splits")
