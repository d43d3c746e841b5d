"""--metric-type entropy: the metric, the store that re-evaluates points recorded without it,
and map / bayesian / nested choosing on it (labels read for reporting only)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from helpers import PLAIN_MAP
from src.core.metrics import get_metric
from src.run.results import ScalingResults

PAIR = ["LetterVal", "DigitVal"]
TRIPLE = ["LetterVal", "ShapeVal", "ArrowVal"]  # closest in accuracy and in entropy differ
SMALL = ["--max-eval-samples", "30", "--n-gen", "20"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _read(path: Path):
    return json.loads(Path(path).read_text())


def _entries(path: Path) -> list[dict]:
    data = _read(path)
    return [data[k] for k in sorted(data, key=int)]


def _strip_entropy(path: Path) -> int:
    """Remove "entropy" from every stored evaluation (a store written before it was
    recorded); returns the number of points."""
    data = _read(path)
    for entry in data.values():
        for values in entry["evals"].values():
            values.pop("entropy")
    Path(path).write_text(json.dumps(data))
    return len(data)


# ------------------------------------------------------------------ the metric
def test_entropy_against_a_hand_computation():
    import torch

    from task_vectors import adamerging, engine

    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [2.0, 2.0 + math.log(2.0)]])
    # uniform over 2: ln 2; p = (3/4, 1/4); p = (1/3, 2/3)
    expected = [math.log(2.0), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)),
                -(math.log(1 / 3) / 3 + 2 / 3 * math.log(2 / 3))]
    assert engine.entropy(logits).tolist() == pytest.approx(expected, abs=1e-6)
    assert adamerging.entropy is engine.entropy  # AdaMerging's loss is the same definition
    metric = get_metric("entropy")
    assert (metric.sense, metric.link, metric.labels) == ("min", "softplus", False)
    assert metric.axis_label == "entropy (lower is better)"
    assert get_metric("accuracy").axis_label == "accuracy"


def test_store_reevaluates_points_without_the_metric(tmp_path):
    path = tmp_path / "scaling_results.json"
    old = {"A": {"accuracy": 0.5, "loss": 1.0}}
    path.write_text(json.dumps({"0": {"evals": old, "models": {"A": 0.0}},
                                "1": {"evals": old, "models": {"A": 1.0}}}))
    store = ScalingResults(path, ["A"], needs="entropy")
    assert len(store) == 0 and store.get([0.0]) is None and len(store.lacking) == 2
    assert store.arrays(["A"], "entropy")[0].shape == (0, 1)
    store.add([0.0], {"A": {"accuracy": 0.5, "loss": 1.0, "entropy": 0.3}})
    store.close()
    stored = _entries(path)  # the point evaluated again replaces the old one; 1.0 waits
    assert [e["models"]["A"] for e in stored] == [1.0, 0.0]
    assert "entropy" in stored[1]["evals"]["A"]
    again = ScalingResults(path, ["A"], needs="entropy")
    assert again.get([0.0])["A"]["entropy"] == 0.3 and again.get([1.0]) is None
    assert ScalingResults(path, ["A"], needs="accuracy").get([1.0]) is not None


# ------------------------------------------------------------------ the CLI
def _argv(zoo_root: str, results: Path, exp_id: str, method: str, models, *extra) -> list:
    return ["--demo", "--zoo-dir", zoo_root, "--method", method, "--zeroshot-merge-models",
            *models, "--results-path", results, "--exp-id", exp_id, *SMALL,
            *(PLAIN_MAP if method == "map" else []), *extra]


@pytest.mark.slow
def test_map_on_entropy_and_resume_of_a_store_without_it(zoo_root, tmp_path, run_cli,
                                                          capsys):
    argv = _argv(zoo_root, tmp_path, "m", "map", PAIR, "--point", "8", "--reevaluate", "3")
    assert run_cli(*argv, "--metric-type", "entropy") == 0
    run = tmp_path / "m"
    info = _read(run / "run.json")
    assert info["metric"] == "entropy" and "reporting only" in info["labels"]
    surrogates = _read(run / "LetterVal_DigitVal_surrogates.json")
    assert {s["link"] for s in surrogates.values()} == {"softplus"}
    store = run / "LetterVal_DigitValscaling_results.json"
    Y = np.array([[e["evals"][d]["entropy"] for d in PAIR] for e in _entries(store)])
    assert Y.shape == (8, 2) and np.all(Y > 0)
    # the pick on a minimised metric: no evaluated merge beats the real pick on both tasks
    # by much, and the pick's real entropy is below the pretrained model's
    chosen = info["summary"]["chosen"]["real"]
    pretrained = info["summary"]["pick_check"]["pretrained"]["real"]
    assert sum(chosen.values()) < sum(pretrained.values())
    # a directory whose stored evaluations lack entropy: every point evaluated again
    n = _strip_entropy(store)
    capsys.readouterr()
    assert run_cli(*argv, "--metric-type", "entropy") == 0
    assert f"{n} stored points lack entropy" in capsys.readouterr().out
    again = _entries(store)
    assert len(again) == n and all("entropy" in v for e in again for v in e["evals"].values())
    assert _read(run / "run.json")["summary"]["chosen"]["real"] == pytest.approx(chosen)


@pytest.mark.slow
def test_bayesian_on_entropy(zoo_root, tmp_path, run_cli):
    argv = _argv(zoo_root, tmp_path, "b", "bayesian", PAIR, "--bayes-initial-pts", "6",
                 "--bayes-update-pts", "2", "--bayes-iter", "1", "--reevaluate", "2",
                 "--metric-type", "entropy")
    assert run_cli(*argv) == 0
    info = _read(tmp_path / "b" / "run.json")
    assert info["metric"] == "entropy" and info["summary"]["n_evaluations"] == 8
    real = info["summary"]["reevaluated"]["real"]
    assert np.all(np.array(real) > 0)  # entropies, not accuracies in (0, 1] by chance:
    stored = _entries(tmp_path / "b" / "LetterVal_DigitValpareto_front_real.json")
    assert np.array(real) == pytest.approx(np.array(
        [[e["evals"][d]["entropy"] for d in PAIR] for e in stored]))


@pytest.mark.slow
def test_nested_on_entropy_pairs_by_entropy(zoo_root, tmp_path, run_cli, capsys):
    argv = _argv(zoo_root, tmp_path, "n", "nested", TRIPLE, "--point", "6",
                 "--metric-type", "entropy")
    assert run_cli(*argv) == 0
    run = tmp_path / "n"
    tree = _read(run / "merge_tree.json")
    assert tree["metric"] == "entropy" and tree["pairing"] == "entropy"
    singles = {next(iter(e["evals"])): next(iter(e["evals"].values()))
               for e in _entries(run / "single_task_scaling_results.json")}
    def closest(metric: str) -> tuple[str, str]:
        gaps = {(a, b): abs(singles[a][metric] - singles[b][metric])
                for i, a in enumerate(TRIPLE) for b in TRIPLE[i + 1:]}
        return min(gaps, key=gaps.get)

    first = tree["rounds"][0]
    assert closest("entropy") != closest("accuracy")  # else this test shows nothing
    assert (first["left"], first["right"]) == closest("entropy")
    assert tree["single_accuracy"] == {m: singles[m]["accuracy"] for m in TRIPLE}
    # the final model's reported accuracy is its accuracy, its rounds' measures entropies
    merge = _read(run / "final_model" / "merge.json")
    assert set(merge["accuracy"]) == set(TRIPLE)
    on_30 = [v * 30 for v in merge["accuracy"].values()]  # accuracies on 30 images: k / 30
    assert np.allclose(on_30, np.round(on_30), atol=1e-6)
    measured = [v * 30 for v in tree["rounds"][-1]["measured"].values()]
    assert not np.allclose(measured, np.round(measured), atol=1e-6)
    # resumed (every round replayed): the same final accuracy, from one evaluation
    assert run_cli(*argv) == 0
    assert _read(run / "final_model" / "merge.json")["accuracy"] == merge["accuracy"]
    # the same directory on accuracy: its rounds chose on entropy, refused in one line
    capsys.readouterr()
    assert run_cli(*argv[:-2]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "chose on entropy, this run chooses on accuracy" in err[0]


@pytest.mark.slow
def test_truth_without_entropy_is_refused_in_one_line(zoo_root, tmp_path, run_cli, capsys):
    grid = _argv(zoo_root, tmp_path, "grid", "grid", PAIR, "--grid-points-per-axis", "3")
    assert run_cli(*grid) == 0
    _strip_entropy(tmp_path / "grid" / "LetterVal_DigitValscaling_results.json")
    capsys.readouterr()
    rc = run_cli(*_argv(zoo_root, tmp_path, "m", "map", PAIR, "--point", "6",
                        "--metric-type", "entropy", "--truth", tmp_path / "grid"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "evaluated before entropy was recorded" in err[0]
    assert not list(tmp_path.glob("m/*scaling_results.json*"))  # refused before evaluating
