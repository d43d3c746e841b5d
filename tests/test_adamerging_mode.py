"""--method adamerging on the demo zoo, end to end: adamerging.json against the core and an
independent engine, final_model/ against theta_pre + sum lambda tau from the zoo's files,
AdaMerging++ (--merge-method ties) layer-wise, a killed run resumed by the same command,
and bad flags refused in one line with exit 2 and nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import FEW_IMAGES, PLAIN_MAP, assert_refused_in_one_line, no_loading
from task_vectors import adamerging as am
from task_vectors.checkpoints import finetuned_path, head_path, load_state_dict, zeroshot_path
from task_vectors.engine import MergeEngine

TASKS = ["LetterVal", "DigitVal", "ShapeVal"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICK = ["--adamerging-steps", "6", "--adamerging-batch-size", "8", "--adamerging-lr", "0.02",
         "--adamerging-checkpoint-every", "2"]
FEW = ["--max-eval-samples", str(FEW_IMAGES)]  # the engines below take the same cap

pytestmark = pytest.mark.usefixtures("one_thread")  # the demo model is tiny


def _read(path: Path):
    return json.loads(Path(path).read_text())


def _argv(zoo_root: str, results: Path, exp_id: str, *extra) -> list[str]:
    return ["--demo", "--zoo-dir", zoo_root, "--method", "adamerging",
            "--zeroshot-merge-models", *TASKS, "--results-path", str(results),
            "--exp-id", exp_id, *QUICK, *FEW, *extra]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adamerging_results")


@pytest.fixture(scope="module")
def task_run(results, zoo_root) -> Path:
    import run_MAP

    assert run_MAP.main(_argv(zoo_root, results, "task", "--adamerging", "task")) == 0
    return results / "task"


@pytest.fixture(scope="module")
def engine(demo_zoo) -> MergeEngine:
    z = demo_zoo.path
    return MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zeroshot_path(z)),
        finetuned={t: str(finetuned_path(z, t)) for t in TASKS},
        heads={t: str(head_path(z, t)) for t in TASKS}, datasets=TASKS, data_location="",
        max_eval_samples=FEW_IMAGES)


def test_task_wise_run_writes_what_it_learned(task_run, engine):
    info = _read(task_run / "adamerging.json")
    assert info["method"] == "AdaMerging (task-wise)" and info["granularity"] == "task"
    assert info["tasks"] == TASKS and info["steps"] == 6
    assert info["settings"]["prior"] == 0.3 and info["settings"]["betas"] == [0.9, 0.999]
    assert "same images" in info["unlabeled_images"]["note"]
    # the coefficients are the core's for the same settings
    expected = am.learn(engine, TASKS, am.AdaMergingSettings(
        granularity="task", steps=6, batch_size=8, lr=0.02), progress=False)
    assert list(info["coefficients"]) == TASKS
    np.testing.assert_allclose(list(info["coefficients"].values()), expected.lambdas,
                               rtol=0, atol=1e-7)
    np.testing.assert_allclose(info["entropy_curve"]["mean"], expected.curve.mean(axis=1))
    # accuracies against the engine's own evaluation at those coefficients
    lam = list(info["coefficients"].values())
    plain = engine.evaluate_at(lam, TASKS)
    for d in TASKS:
        assert info["accuracy"][d] == pytest.approx(plain[d]["accuracy"])
    assert info["evaluations"]["pretrained"]["LetterVal"]["accuracy"] == pytest.approx(
        engine.evaluate_at(np.zeros(3), ["LetterVal"])["LetterVal"]["accuracy"])
    assert set(info["evaluations"]) == {"pretrained", "task arithmetic, lambda=0.3",
                                        "fine-tuned (own dataset)", "AdaMerging (task-wise)"}
    assert (task_run / "adamerging_entropy.png").read_bytes()[:8] == PNG_MAGIC


def test_run_json_says_which_images_were_used(task_run):
    run = _read(task_run / "run.json")
    assert run["method"] == "adamerging"
    assert "same images the accuracies here are measured on" in \
        run["summary"]["unlabeled_images"]
    assert "adamerging.json" in run["outputs"] and "final_model/finetuned.pt" in run["outputs"]


def test_final_model_is_theta_pre_plus_the_learned_task_vectors(task_run, demo_zoo):
    z = demo_zoo.path
    lam = _read(task_run / "final_model" / "merge.json")["coefficients"]
    saved = load_state_dict(task_run / "final_model" / "finetuned.pt")
    pre = load_state_dict(z / "zeroshot.pt")
    fts = {t: load_state_dict(z / t / "finetuned.pt") for t in TASKS}
    changed = 0
    for key, p in pre.items():
        if not torch.is_floating_point(p):
            continue
        expected = p.double() + sum(lam[t] * (fts[t][key].double() - p.double()) for t in TASKS)
        torch.testing.assert_close(saved[key].double(), expected, atol=1e-5, rtol=1e-5)
        changed += not torch.equal(saved[key], p)
    assert changed > 10


def test_layer_wise_plus_plus_learns_one_coefficient_per_tensor(results, zoo_root, engine):
    import run_MAP

    assert run_MAP.main(_argv(zoo_root, results, "pp", "--merge-method", "ties")) == 0
    info = _read(results / "pp" / "adamerging.json")
    assert info["method"] == "AdaMerging++ (layer-wise)"
    assert info["vectors"].startswith("TIES")
    layers = [layer["name"] for layer in info["layers"]]
    assert len(layers) == len(am.Layout.of(engine))
    lam = np.array([[info["coefficients"][t][k] for k in layers] for t in TASKS])
    assert lam.min() >= 0.0 and lam.max() <= 1.0 and lam.std() > 0
    # no fine-tuned reference: a TIES vector at 1 is not the fine-tuned model
    assert "fine-tuned (own dataset)" not in info["evaluations"]
    assert "TIES vectors, summed, lambda=0.3" in info["evaluations"]
    # reloaded: one row per task, one column per layer, in adamerging.json's order
    from src.run.results import load_run

    run = load_run(results / "pp")
    np.testing.assert_array_equal(run["lambdas"], lam)
    assert run["adamerging"] == info and run["final"]["method"] == info["method"]


def test_load_run_gives_the_learned_coefficients_and_curve(task_run):
    from src.run.results import load_run

    run = load_run(task_run)
    info = _read(task_run / "adamerging.json")
    assert run["info"]["method"] == "adamerging" and run["adamerging"] == info
    np.testing.assert_array_equal(run["lambdas"], [info["coefficients"][t] for t in TASKS])
    assert run["curve"].shape == (6, len(TASKS))
    np.testing.assert_allclose(run["curve"].mean(axis=1), info["entropy_curve"]["mean"])
    np.testing.assert_array_equal(run["curve"][:, 1], info["entropy_curve"]["per_task"][TASKS[1]])
    assert run["final"]["checkpoint"] == task_run / "final_model" / "finetuned.pt"
    assert run["final"]["coefficients"] == info["coefficients"]


def test_load_run_of_an_unfinished_or_edited_adamerging_run_is_one_line(task_run, tmp_path):
    import shutil

    from map_common.errors import MAPError
    from src.run.results import load_run

    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(task_run / "run.json", partial / "run.json")
    with pytest.raises(MAPError, match="without adamerging.json or final_model/merge.json"):
        load_run(partial)
    edited = tmp_path / "edited"
    shutil.copytree(task_run, edited)
    info = _read(edited / "adamerging.json")
    del info["coefficients"][TASKS[0]]
    (edited / "adamerging.json").write_text(json.dumps(info))
    with pytest.raises(MAPError, match="coefficients or entropy curve are missing or edited"):
        load_run(edited)
    (edited / "final_model" / "merge.json").write_text("[]")
    with pytest.raises(MAPError, match="merge.json: expected an object"):
        load_run(edited)


def test_a_killed_run_continues_with_the_same_command(results, zoo_root, task_run,
                                                      monkeypatch, capsys):
    import run_MAP

    original = am.EntropyObjective.gradient

    def interrupted_at_step_5(self, lambdas, step, **kw):
        if step == 5:
            raise KeyboardInterrupt
        return original(self, lambdas, step, **kw)

    monkeypatch.setattr(am.EntropyObjective, "gradient", interrupted_at_step_5)
    argv = _argv(zoo_root, results, "killed", "--adamerging", "task")
    assert run_MAP.main(argv) == 130
    assert "Resume with the same command" in capsys.readouterr().err
    assert not (results / "killed" / "adamerging.json").exists()
    monkeypatch.setattr(am.EntropyObjective, "gradient", original)
    assert run_MAP.main(argv) == 0
    resumed = _read(results / "killed" / "adamerging.json")
    assert resumed["resumed_from_step"] == 4
    assert resumed["coefficients"] == _read(task_run / "adamerging.json")["coefficients"]
    # other settings on the same run: refused in one line
    capsys.readouterr()
    assert run_MAP.main([*argv, "--adamerging-prior", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "settings.prior" in err[0]


@pytest.mark.parametrize("text, said", [
    ("[1]", "not a record of evaluations (expected an object)"),
    ('{"setting": ', "not valid JSON")])
def test_a_damaged_evaluations_file_is_one_line_before_loading(text, said, zoo_root,
                                                               tmp_path, monkeypatch, capsys):
    import run_MAP
    import src.modes.common as common

    path = tmp_path / "d" / "adamerging_evaluations.json"
    path.parent.mkdir()
    path.write_text(text)
    monkeypatch.setattr(common, "open_evaluator", no_loading)
    assert run_MAP.main(_argv(zoo_root, tmp_path, "d")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}: {said}" in err[0] and "move it away" in err[0]
    assert path.read_text() == text


@pytest.mark.parametrize("extra, message", [
    (["--adamerging-steps", "0"], r"--adamerging-steps: must be a positive integer, got 0"),
    (["--adamerging-steps", "-3"], r"--adamerging-steps: must be a positive integer"),
    (["--adamerging-steps", "many"], r"--adamerging-steps: expected an integer, got 'many'"),
    (["--adamerging-batch-size", "0"], r"--adamerging-batch-size: must be a positive"),
    (["--adamerging-checkpoint-every", "0"], r"--adamerging-checkpoint-every: must be a pos"),
    (["--adamerging-lr", "0"], r"--adamerging-lr: must be in \(0, 1000\]"),
    (["--adamerging-lr", "fast"], r"--adamerging-lr: expected a number, got 'fast'"),
    (["--adamerging-prior", "1.5"], r"--adamerging-prior: must be in \[0, 1\]"),
    (["--adamerging-prior", "-0.1"], r"--adamerging-prior: must be in \[0, 1\]"),
    (["--adamerging-betas", "1", "0.9"], r"--adamerging-betas: must be in \[0, 1\)"),
    (["--adamerging-clamp", "1", "0"], r"--adamerging-clamp 1.0 0.0: LOW must be below HIGH"),
    (["--adamerging-clamp", "0.5", "1"], r"--adamerging-prior 0.3 lies outside"),
    (["--adamerging-clamp", "0", "inf"], r"--adamerging-clamp: must be a finite number"),
    (["--adamerging", "block"], r"--adamerging: invalid choice: 'block'"),
    (["--merge-method", "dare"], r"--method adamerging learns on task vectors as fine-tuned"),
    (["--baselines"], r"--baselines goes with --method map or bayesian"),
])
def test_bad_flags_are_one_line_exit_2_and_write_nothing(extra, message, run_cli, capsys,
                                                         tmp_path, zoo_root):
    assert_refused_in_one_line(run_cli, capsys, tmp_path, message, "--demo", "--zoo-dir",
                               zoo_root, "--method", "adamerging", "--results-path",
                               tmp_path / "results", "--exp-id", "bad", *extra)


def test_entropy_curve_figure_draws_each_task_and_the_mean():
    from src.plotting import PlotInputError
    from src.plotting.adamerging import _running_mean, entropy_curve_figure

    curve = np.random.default_rng(0).uniform(0, 1, (40, 3))
    fig = entropy_curve_figure(curve, TASKS, window=4)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3 + 2  # tasks, the raw mean, the smoothed mean
    np.testing.assert_allclose(lines[0].get_ydata()[10], curve[7:11, 0].mean())
    np.testing.assert_allclose(lines[-1].get_ydata()[1], curve[:2].mean())
    np.testing.assert_allclose(_running_mean(curve, 1), curve)
    with pytest.raises(PlotInputError):
        entropy_curve_figure(curve, TASKS[:2])
    with pytest.raises(PlotInputError):
        entropy_curve_figure(np.full((3, 3), np.nan), TASKS)


# ------------------------------------------------------------------ --baselines
PAIR = ["LetterVal", "DigitVal"]
NAMES = ["AdaMerging (task-wise)", "AdaMerging (layer-wise)", "AdaMerging++ (task-wise)",
         "AdaMerging++ (layer-wise)"]


def _map_argv(zoo_root: str, results: Path, exp_id: str, *extra) -> list[str]:
    return ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--zeroshot-merge-models",
            *PAIR, "--results-path", str(results), "--exp-id", exp_id, "--n-gen", "10",
            "--reevaluate", "1", "--baselines", *QUICK, *FEW, *PLAIN_MAP, *extra]


@pytest.fixture(scope="module")
def baselines_run(results, zoo_root) -> Path:
    import run_MAP

    assert run_MAP.main(_map_argv(zoo_root, results, "baselines")) == 0
    return results / "baselines"


def test_baselines_gain_the_four_adamerging_points(baselines_run, demo_zoo):
    from task_vectors.baselines import AdaMergingBaseline
    from task_vectors.merging import ties_vectors

    stored = _read(baselines_run / "baselines.json")
    assert set(NAMES) <= set(stored)
    z = demo_zoo.path
    engine = MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zeroshot_path(z)),
        finetuned={t: str(finetuned_path(z, t)) for t in PAIR},
        heads={t: str(head_path(z, t)) for t in PAIR}, datasets=PAIR, data_location="",
        max_eval_samples=FEW_IMAGES)
    layout = am.Layout.of(engine)
    for name in NAMES:
        d = stored[name]["describe"]
        settings = am.AdaMergingSettings(granularity=d["granularity"], steps=6, batch_size=8,
                                         lr=0.02, checkpoint_every=2)
        tau = None if d["vectors"] == "ta" else ties_vectors(engine.tau.clone(), 0.2)
        learned = am.learn(engine, PAIR, settings, tau=tau, progress=False)
        np.testing.assert_allclose(np.array(d["coefficients"]), learned.lambdas, atol=1e-7)
        job = AdaMergingBaseline(name, lambdas=tuple(map(tuple, learned.lambdas))
                                 if learned.lambdas.ndim == 2 else tuple(learned.lambdas),
                                 spans=tuple(layout.spans), vectors=d["vectors"])
        direct = engine.evaluate_theta(job.theta(engine.tau, engine.theta_pre), PAIR)
        for t in PAIR:
            assert stored[name]["evals"][t]["accuracy"] == pytest.approx(
                direct[t]["accuracy"]), name
        assert "images it learned from" in d["images"]
    summary = _read(baselines_run / "run.json")["summary"]["baselines"]
    assert set(NAMES) <= set(summary)
    assert (baselines_run / "pareto_front_withbaselines.png").read_bytes()[:8] == PNG_MAGIC


def test_baselines_resume_without_learning_again(baselines_run, results, zoo_root,
                                                 monkeypatch, capsys):
    import run_MAP

    def must_not_learn(*a, **k):
        raise AssertionError("learned again")

    monkeypatch.setattr(am, "learn", must_not_learn)
    assert run_MAP.main(_map_argv(zoo_root, results, "baselines")) == 0
    capsys.readouterr()
    # other AdaMerging settings on the same run: one line, exit 2
    assert run_MAP.main([*_map_argv(zoo_root, results, "baselines"),
                         "--adamerging-steps", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other --adamerging-* settings" in err[0]


def test_no_adamerging_baselines_leaves_them_out(results, zoo_root, monkeypatch):
    import run_MAP

    monkeypatch.setattr(am, "learn", lambda *a, **k: pytest.fail("learned"))
    assert run_MAP.main(_map_argv(zoo_root, results, "quick",
                                  "--no-adamerging-baselines")) == 0
    stored = _read(results / "quick" / "baselines.json")
    assert not set(NAMES) & set(stored) and "TIES-merging" in stored
