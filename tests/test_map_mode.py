"""--method map on the demo zoo, end to end: every output file in the original format, the
stored numbers against an independent engine evaluation, the preference pick, the loss
metric, 4 tasks, and resuming a killed run without repeating a stored evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from src.core.pareto import non_dominated, pick_by_preference
from helpers import (FEW_IMAGES, PLAIN_MAP, CountingEvaluate, check_final_model_file,
                     zoo_engine)

REPO = Path(__file__).resolve().parent.parent
PAIR = ["LetterVal", "DigitVal"]
FOUR = ["LetterVal", "DigitVal", "ShapeVal", "SymbolVal"]
N_GEN = "50"  # the checks below do not need a converged NSGA-III
REEVALUATE = "3"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")  # the demo model is tiny


def _main(*argv) -> int:
    import run_MAP

    return run_MAP.main([str(a) for a in argv])


def _map_argv(zoo_root: str, results: Path, exp_id: str, models=PAIR, *extra) -> list:
    return ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--n-gen", N_GEN,
            "--reevaluate", REEVALUATE, "--max-eval-samples", FEW_IMAGES, "--zeroshot-merge-models", *models,
            "--zeroshot-eval-datasets", *models, "--results-path", results, "--exp-id", exp_id,
            *PLAIN_MAP, *extra]


def _read(path: Path):
    return json.loads(Path(path).read_text())


def _front(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = _read(path)
    return np.array([json.loads(k) for k in data], dtype=float), np.array(list(data.values()))


def _predict(params: dict, C: np.ndarray) -> np.ndarray:
    """metric = link(1/2 c'Ac + b'c + e), from the stored _surrogates.json entry."""
    A, b, e = np.array(params["A"]), np.array(params["b"]), float(params["e"])
    z = 0.5 * np.einsum("ni,ij,nj->n", C, A, C) + C @ b + e
    return {"sigmoid": lambda v: 1 / (1 + np.exp(-v)),
            "softplus": lambda v: np.logaddexp(0.0, v)}[params["link"]](z)


def _stored(path: Path, models, datasets, metric) -> tuple[np.ndarray, np.ndarray]:
    data = _read(path)
    entries = [data[k] for k in sorted(data, key=int)]
    C = np.array([[e["models"][m] for m in models] for e in entries])
    Y = np.array([[e["evals"][d][metric] for d in datasets] for e in entries])
    return C, Y


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("map_results")


@pytest.fixture(scope="module")
def map_run(results, zoo_root) -> Path:
    assert _main(*_map_argv(zoo_root, results, "full")) == 0
    return results / "full"


@pytest.fixture(scope="module")
def engine(demo_zoo):
    """An engine of our own on the zoo's files (not the pipeline's builder)."""
    return zoo_engine(demo_zoo, FOUR, batch_size=128, max_eval_samples=FEW_IMAGES)


# ------------------------------------------------------------------ files and formats
def test_map_writes_every_file_in_the_original_format(map_run):
    names = "LetterVal_DigitVal"
    files = {f"{names}scaling_results.json", f"{names}_params.json", f"{names}_surrogates.json",
             f"{names}pareto_front.json", "pareto_front.png", "surrogate_fit.png",
             "surrogate_contours.png", "run.json"}
    assert files <= {p.name for p in map_run.iterdir()}

    scaling = _read(map_run / f"{names}scaling_results.json")
    assert sorted(scaling, key=int) == [str(i) for i in range(12)]  # default (T+1)(T+2)
    for entry in scaling.values():
        assert set(entry) == {"evals", "models"}
        assert list(entry["models"]) == PAIR
        assert set(entry["evals"]) == set(PAIR)
        for ev in entry["evals"].values():
            assert set(ev) == {"accuracy", "loss", "entropy"}
            assert 0.0 <= ev["accuracy"] <= 1.0 and ev["loss"] > 0.0

    # The original's _params.json: a list (one per task) of (T+1)(T+2)/2 coefficients.
    params = _read(map_run / f"{names}_params.json")
    assert isinstance(params, list) and len(params) == 2
    assert all(len(p) == 6 for p in params)
    surrogates = _read(map_run / f"{names}_surrogates.json")
    assert set(surrogates) == set(PAIR)
    for p in surrogates.values():
        assert np.shape(p["A"]) == (2, 2) and np.shape(p["b"]) == (2,)
        assert p["link"] == "sigmoid" and 0.9 < p["r2"] <= 1.0

    front = _read(map_run / f"{names}pareto_front.json")
    assert len(front) >= 2
    for key, value in front.items():
        c = json.loads(key)
        assert key == str([float(x) for x in c]) and len(c) == 2
        assert all(0.0 <= x <= 1.0 for x in c)
        assert len(value) == 2 and all(0.0 <= v <= 1.0 for v in value)

    for png in ("pareto_front.png", "surrogate_fit.png", "surrogate_contours.png"):
        assert (map_run / png).read_bytes()[:8] == PNG_MAGIC

    run = _read(map_run / "run.json")
    assert run["method"] == "map" and run["seed"] == 0
    assert run["arguments"]["exp_id"] == "full" and run["arguments"]["n_gen"] == int(N_GEN)
    assert run["arguments"]["zeroshot_merge_models"] == PAIR
    assert {"torch", "numpy", "pymoo", "scikit-learn"} <= set(run["versions"])
    timings = run["timings"]
    for key in ("load_seconds", "evaluation_seconds", "search_seconds"):
        assert 0.0 < timings[key] < timings["total_seconds"]
    # Every file the run wrote is described in run.json.
    written = {str(p.relative_to(map_run)) for p in map_run.rglob("*") if p.is_file()}
    written -= {"run.json"}
    assert "final_model/finetuned.pt" in written
    assert written <= set(run["outputs"])
    assert all(isinstance(v, str) and v for v in run["outputs"].values())


def _original_quadratic(X, params, activation):
    """The original MAP tool's model, written from its documented term order: x_i^2 for
    each i, x_i*x_j for i < j, x_i for each i, then the constant; X is (n_task, n_point)."""
    n, k, total = len(X), 0, 0.0
    for i in range(n):
        total, k = total + params[k] * X[i] ** 2, k + 1
    for i in range(n):
        for j in range(i + 1, n):
            total, k = total + params[k] * X[i] * X[j], k + 1
    for i in range(n):
        total, k = total + params[k] * X[i], k + 1
    return activation(total + params[k])


def test_params_json_read_with_the_original_formula_reproduces_the_front(map_run):
    names = "LetterVal_DigitVal"
    params = _read(map_run / f"{names}_params.json")
    front = _read(map_run / f"{names}pareto_front.json")
    C = np.array([json.loads(k) for k in front])
    stored = np.array(list(front.values()))
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    for k, p in enumerate(params):
        np.testing.assert_allclose(_original_quadratic(C.T, p, sigmoid), stored[:, k],
                                   rtol=0, atol=1e-9)


def test_stored_evals_equal_a_direct_engine_evaluation(map_run, engine):
    names = "LetterVal_DigitVal"
    for fname in (f"{names}scaling_results.json", f"{names}pareto_front_real.json"):
        stored = _read(map_run / fname)
        assert stored
        for entry in stored.values():
            c = [entry["models"]["LetterVal"], entry["models"]["DigitVal"], 0.0, 0.0]
            direct = engine.evaluate_at(c, PAIR)
            for d in PAIR:
                assert entry["evals"][d]["accuracy"] == direct[d]["accuracy"]
                assert entry["evals"][d]["loss"] == pytest.approx(direct[d]["loss"], rel=1e-5)


def test_the_handed_over_model_is_written_as_a_checkpoint(map_run, demo_zoo, engine):
    """final_model/: the pick of run.json as θ_pre + Σ c τ in the task_vectors format; the
    file, loaded as the pretrained model of a fresh engine, scores what merge.json says."""
    chosen = _read(map_run / "run.json")["summary"]["chosen"]
    merge = _read(map_run / "final_model" / "merge.json")
    assert merge == {"coefficients": chosen["coefficients"], "metric": "accuracy",
                     "real": chosen["real"], "source": chosen["from"]}
    assert "final_model/finetuned.pt" in _read(map_run / "run.json")["outputs"]
    check_final_model_file(map_run, demo_zoo.path, PAIR)
    from src.run.results import load_run

    final = load_run(map_run)["final"]
    assert final["checkpoint"] == map_run / "final_model" / "finetuned.pt"
    assert {k: v for k, v in final.items() if k != "checkpoint"} == merge
    loaded = zoo_engine(demo_zoo, PAIR, pretrained=str(map_run / "final_model" / "finetuned.pt"),
                        batch_size=128, max_eval_samples=FEW_IMAGES)
    scored = loaded.evaluate_at(np.zeros(len(PAIR)), PAIR)  # c = 0: the file itself
    assert {d: scored[d]["accuracy"] for d in PAIR} == pytest.approx(merge["real"], abs=1e-9)


def test_the_readme_load_run_example_runs_on_a_map_run(map_run):
    """The README's Python example, as written there, on a finished map run of the pair."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "load_run" in b]
    assert len(blocks) == 1
    code = blocks[0].replace('"nested_experiments4/<exp-id>"', repr(str(map_run)))
    assert code != blocks[0]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    run = scope["run"]
    assert run["front_C"].shape[1] == len(PAIR) == run["front_F"].shape[1]
    assert 0 < float(run["surrogates"]["LetterVal"].predict([[0.3, 0.5]])[0]) < 1


def test_no_final_checkpoint_writes_the_coefficients_only(results, zoo_root, capsys):
    """--no-final-checkpoint: merge.json but no encoder file; a checkpoint an earlier run
    left under the same --exp-id goes with the run's other stale files."""
    run_dir = results / "no_checkpoint"
    assert _main(*_map_argv(zoo_root, results, "no_checkpoint")) == 0
    assert (run_dir / "final_model" / "finetuned.pt").exists()
    capsys.readouterr()
    assert _main(*_map_argv(zoo_root, results, "no_checkpoint", PAIR,
                            "--no-final-checkpoint")) == 0
    assert not (run_dir / "final_model" / "finetuned.pt").exists()
    assert "Merged model:" not in capsys.readouterr().out
    run = _read(run_dir / "run.json")
    assert "final_model/finetuned.pt" not in run["outputs"]
    merge = _read(run_dir / "final_model" / "merge.json")
    assert merge["coefficients"] == run["summary"]["chosen"]["coefficients"]


def test_front_is_the_stored_surrogates_non_dominated_set(map_run):
    names = "LetterVal_DigitVal"
    params = _read(map_run / f"{names}_surrogates.json")
    C, F = _front(map_run / f"{names}pareto_front.json")
    predicted = np.column_stack([_predict(params[d], C) for d in PAIR])
    np.testing.assert_allclose(F, predicted, atol=1e-9)
    assert non_dominated(F, ["max", "max"]).all()
    # The stored r2 is the surrogate's fit to the stored accuracies.
    Cs, Ys = _stored(map_run / f"{names}scaling_results.json", PAIR, PAIR, "accuracy")
    for k, d in enumerate(PAIR):
        pred = _predict(params[d], Cs)
        r2 = 1 - ((Ys[:, k] - pred) ** 2).sum() / ((Ys[:, k] - Ys[:, k].mean()) ** 2).sum()
        assert params[d]["r2"] == pytest.approx(r2, abs=1e-9)


def test_chosen_point_is_the_preference_pick_of_the_stored_front(map_run):
    preference = yaml.safe_load((REPO / "example_preference.yaml").read_text())
    from src.core.front import anchor_values
    from src.core.pareto import pick_tchebycheff
    from src.core.surrogate import QuadraticSurrogate

    C, F = _front(map_run / "LetterVal_DigitValpareto_front.json")
    stored = _read(map_run / "LetterVal_DigitVal_surrogates.json")
    surrogates = [QuadraticSurrogate.from_params(stored[d]) for d in PAIR]
    Cs, Ys = _stored(map_run / "LetterVal_DigitValscaling_results.json", PAIR, PAIR, "accuracy")
    _, best = anchor_values(Cs, Ys, surrogates)
    # the design lacks c = 0: the pretrained model was evaluated once beside it, and its
    # measured metrics are the lower anchor
    C0, worst = _stored(map_run / "reference_models.json", PAIR, PAIR, "accuracy")
    assert C0.tolist() == [[0.0, 0.0]] and not (Cs == 0).all(axis=1).any()
    worst = worst[0]
    # the default pick: Tchebycheff between pretrained and fine-tuned values
    pick = pick_tchebycheff(F, [preference[d] for d in PAIR], ["max", "max"], worst, best)
    assert pick != pick_by_preference(F, [preference[d] for d in PAIR], ["max", "max"])
    summary = _read(map_run / "run.json")["summary"]
    assert summary["pick_from"] == "evaluated"  # the default: see the --pick-from test below
    chosen = summary["chosen"]["front_pick"]
    np.testing.assert_allclose([chosen["coefficients"][m] for m in PAIR], C[pick], atol=1e-12)
    np.testing.assert_allclose([chosen["predicted"][d] for d in PAIR], F[pick], atol=1e-12)
    # ... and it was merged and evaluated for real.
    real = _read(map_run / "LetterVal_DigitValpareto_front_real.json")
    match = [e for e in real.values()
             if np.allclose([e["models"][m] for m in PAIR], C[pick], atol=1e-9)]
    assert len(match) == 1
    assert [match[0]["evals"][d]["accuracy"] for d in PAIR] == \
        [chosen["real"][d] for d in PAIR]


# ------------------------------------------------------------------ loss, 4 tasks
@pytest.mark.slow
def test_loss_metric_is_minimised_with_a_softplus_link(results, zoo_root, tmp_path):
    pref = tmp_path / "pref.json"
    weights = {"LetterVal": 3.0, "DigitVal": 1.0}
    pref.write_text(json.dumps(weights))
    assert _main(*_map_argv(zoo_root, results, "loss", PAIR, "--metric-type", "loss",
                            "--preference", pref, "--pick", "weighted-sum")) == 0
    run_dir = results / "loss"
    params = _read(run_dir / "LetterVal_DigitVal_surrogates.json")
    assert [params[d]["link"] for d in PAIR] == ["softplus", "softplus"]
    Cs, Ys = _stored(run_dir / "LetterVal_DigitValscaling_results.json", PAIR, PAIR, "loss")
    for k, d in enumerate(PAIR):  # fitted to the losses, not the accuracies
        pred = _predict(params[d], Cs)
        r2 = 1 - ((Ys[:, k] - pred) ** 2).sum() / ((Ys[:, k] - Ys[:, k].mean()) ** 2).sum()
        assert params[d]["r2"] == pytest.approx(r2, abs=1e-9) and r2 > 0.8

    C, F = _front(run_dir / "LetterVal_DigitValpareto_front.json")
    assert (F > 0).all()
    # Minimised: the front reaches each surrogate's minimum over the box, and no point of
    # the box does better on both losses by more than 2% of their range (a maximised
    # front would be dominated by most of the box).
    axis = np.linspace(0, 1, 101)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    G = np.column_stack([_predict(params[d], grid) for d in PAIR])
    span = G.max(axis=0) - G.min(axis=0)
    assert (F.min(axis=0) <= G.min(axis=0) + 0.02 * span).all()
    gain = ((F[:, None, :] - G[None, :, :]) / span).min(axis=2)  # [front, grid]
    assert gain.max() < 0.02

    chosen = _read(run_dir / "run.json")["summary"]["chosen"]
    pick = pick_by_preference(F, [weights[d] for d in PAIR], ["min", "min"])
    front_pick = chosen["front_pick"]  # the front's pick (the model handed over: --pick-from)
    np.testing.assert_allclose([front_pick["coefficients"][m] for m in PAIR], C[pick],
                               atol=1e-12)
    assert chosen["preference"] == weights


@pytest.mark.slow
def test_four_task_demo_run(results, zoo_root):
    assert _main(*_map_argv(zoo_root, results, "four", FOUR)) == 0
    run_dir = results / "four"
    names = "_".join(FOUR)
    scaling = _read(run_dir / f"{names}scaling_results.json")
    assert len(scaling) == 30  # (T+1)(T+2) for T = 4
    assert all(list(e["models"]) == FOUR and set(e["evals"]) == set(FOUR)
               for e in scaling.values())
    C, F = _front(run_dir / f"{names}pareto_front.json")
    assert C.shape[1] == 4 and F.shape[1] == 4 and len(C) >= 4
    assert non_dominated(F, ["max"] * 4).all()
    params = _read(run_dir / f"{names}_surrogates.json")
    np.testing.assert_allclose(F, np.column_stack([_predict(params[d], C) for d in FOUR]),
                               atol=1e-9)
    assert (run_dir / "pareto_front.png").read_bytes()[:8] == PNG_MAGIC
    assert (run_dir / "surrogate_fit.png").exists()
    assert _read(run_dir / "run.json")["summary"]["n_evaluations"] == 30


# ------------------------------------------------------------------ resume
@pytest.mark.slow
def test_killed_run_resumes_without_repeating_a_stored_evaluation(results, zoo_root, map_run,
                                                                   monkeypatch, capsys):
    from task_vectors.engine import MergeEngine

    original = MergeEngine.evaluate
    names = "LetterVal_DigitVal"
    run_dir = results / "resume"
    argv = _map_argv(zoo_root, results, "resume")

    k = 5
    killer = CountingEvaluate(original, stop_after=k)
    monkeypatch.setattr(MergeEngine, "evaluate", killer)
    assert _main(*argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--exp-id resume" in err and "Traceback" not in err
    assert len(_read(run_dir / f"{names}scaling_results.json")) == k

    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert _main(*argv) == 0
    n_reevaluated = len(_read(run_dir / f"{names}pareto_front_real.json"))
    assert n_reevaluated == len(_read(run_dir / "run.json")["summary"]["reevaluated"]["real"])
    # + the pretrained model (c = 0), evaluated once for the pick check
    assert len(_read(run_dir / "reference_models.json")) == 1
    assert counter.calls == (12 - k) + n_reevaluated + 1

    # The same points, numbers and front as the run that was never interrupted.
    full_C, full_Y = _stored(map_run / f"{names}scaling_results.json", PAIR, PAIR, "loss")
    C, Y = _stored(run_dir / f"{names}scaling_results.json", PAIR, PAIR, "loss")
    order, full_order = np.lexsort(C.T), np.lexsort(full_C.T)
    np.testing.assert_array_equal(C[order], full_C[full_order])
    np.testing.assert_allclose(Y[order], full_Y[full_order], rtol=1e-6)
    front_file = run_dir / f"{names}pareto_front.json"
    assert _read(front_file) == _read(map_run / f"{names}pareto_front.json")

    # A second re-run has nothing left to evaluate and writes the same front.
    before = front_file.read_bytes()
    counter = CountingEvaluate(original)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert _main(*argv) == 0
    assert counter.calls == 0
    assert front_file.read_bytes() == before


# ------------------------------------------------------------------ --pick-from evaluated
def test_pick_from_evaluated_hands_over_the_rules_best_stored_model(results, zoo_root, capsys):
    """Explicit here; the default since it was measured (docs/front_quality.md)."""
    from src.core.pick_check import keeps_pretrained
    from src.core.pareto import pick_tchebycheff

    assert _main(*_map_argv(zoo_root, results, "evaluated", FOUR, "--pick-from",
                            "evaluated")) == 0
    run_dir, names = results / "evaluated", "_".join(FOUR)
    summary = _read(run_dir / "run.json")["summary"]
    chosen = summary["chosen"]
    assert summary["pick_from"] == "evaluated"
    assert chosen["from"] in ("design", "re-evaluated front", "pretrained")
    # every model the run evaluated, from its stores
    parts = [_stored(run_dir / f, FOUR, FOUR, "accuracy") for f in
             (f"{names}pareto_front_real.json", f"{names}scaling_results.json",
              "reference_models.json")]
    C = np.vstack([p[0] for p in parts])
    Y = np.vstack([p[1] for p in parts])
    pre = parts[2][1][0]
    weights = [yaml.safe_load((REPO / "example_preference.yaml").read_text())[d] for d in FOUR]
    keep = np.flatnonzero(keeps_pretrained(Y, pre, "max", weights))
    rows = keep if keep.size else np.arange(len(Y))
    anchors = chosen["anchors"]
    assert anchors["worst"] == pre.tolist()  # the measured pretrained model
    j = rows[pick_tchebycheff(Y[rows], weights, ["max"] * 4, anchors["worst"], anchors["best"])]
    np.testing.assert_allclose([chosen["coefficients"][m] for m in FOUR], C[j], atol=1e-12)
    assert [chosen["real"][d] for d in FOUR] == Y[j].tolist()
    assert chosen["keeps_pretrained"] == bool(keep.size)
    # the surrogate front's own pick is reported beside it, re-evaluated
    front_C, _ = _front(run_dir / f"{names}pareto_front.json")
    front_pick = [chosen["front_pick"]["coefficients"][m] for m in FOUR]
    assert np.isclose(front_C, front_pick, atol=1e-12).all(axis=1).any()
    assert chosen["front_pick"]["real"] is not None
    printed = capsys.readouterr().out
    assert "the best evaluated model" in printed
    assert f"Merged model: {run_dir / 'final_model' / 'finetuned.pt'}" in printed.splitlines()
    # the model handed over is the evaluated pick, not the front's
    assert _read(run_dir / "final_model" / "merge.json")["coefficients"] == chosen["coefficients"]
    # --pick-from front hands over the front's pick: the same run, the same files
    assert _main(*_map_argv(zoo_root, results, "evaluated", FOUR, "--pick-from", "front")) == 0
    summary = _read(run_dir / "run.json")["summary"]
    assert summary["pick_from"] == "front" and "front_pick" not in summary["chosen"]
    assert summary["chosen"]["coefficients"] == chosen["front_pick"]["coefficients"]
    assert _read(run_dir / "final_model" / "merge.json")["coefficients"] == \
        chosen["front_pick"]["coefficients"]
    assert summary["chosen"]["real"] == chosen["front_pick"]["real"]
