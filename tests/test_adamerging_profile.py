"""--merge-method adamerging (MAP along learned profiles): the transform against a hand
computation on a tiny engine, equal coefficients giving plain task arithmetic, what a Ray
worker receives, and on the demo zoo a run that writes its front and records the profile,
resumes without learning again, and refuses bad flags in one line."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import PLAIN_MAP, assert_refused_in_one_line, random_tiny_clip
from map_common.errors import MAPError
from task_vectors import adamerging as am
from task_vectors.engine import MergeEngine
from task_vectors.eval_data import EvalTensors
from task_vectors.merge_methods import METHODS, AdaMergingProfile, method_from_flags
from task_vectors.merge_methods.adamerging import STATE
from task_vectors.modeling import ClassificationHead, ImageEncoder
from task_vectors.zoo import MODEL_CFG, PREPROCESS_CFG

pytestmark = pytest.mark.usefixtures("one_thread")  # the models are tiny
PAIR = ["LetterVal", "DigitVal"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny open_clip encoder, 2 synthetic fine-tuned versions, 2 heads and 2
    small evaluation sets; returns (folder, pre, fine-tuned states, heads, data)."""
    folder = tmp_path_factory.mktemp("tinyprofile")
    gen = torch.Generator().manual_seed(1)
    _, pre, fts = random_tiny_clip(folder, 2, generator=gen)
    dim = MODEL_CFG["embed_dim"]
    heads = {"A": ClassificationHead(True, torch.randn(5, dim, generator=gen)),
             "B": ClassificationHead(True, torch.randn(3, dim, generator=gen))}
    side = PREPROCESS_CFG["size"]
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.3, 0.25])
    data = {name: EvalTensors(torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8,
                                            generator=gen),
                              torch.randint(0, k, (n,), generator=gen), mean, std)
            for name, n, k in (("A", 12, 5), ("B", 9, 3))}
    return folder, pre, fts, heads, data


def _engine(tiny, transform=None) -> MergeEngine:
    folder, pre, fts, heads, data = tiny
    encoder = ImageEncoder(f"local-dir:{folder}")
    encoder.load_state_dict(pre)
    return MergeEngine(encoder, fts, heads, data, task_names=["A", "B"], batch_size=8,
                       tau_transform=transform)


def _profile(engine, lambdas) -> AdaMergingProfile:
    layout = am.Layout.of(engine)
    return AdaMergingProfile(lambdas=tuple(map(tuple, np.asarray(lambdas).tolist())),
                             spans=tuple(layout.spans), layers=tuple(layout.keys),
                             tasks=tuple(engine.task_names))


def test_the_transform_is_lambda_tau_over_the_parameter_weighted_mean(tiny):
    _, pre, fts, _, _ = tiny
    engine = _engine(tiny)
    keys = engine.keys
    lam = np.random.default_rng(3).uniform(0.05, 1.0, (2, len(keys)))
    method = _profile(engine, lam)
    engine.transform_tau(method.tau_transform())
    sizes = np.array([pre[k].numel() for k in keys], dtype=float)
    for i, ft in enumerate(fts):
        m = float((lam[i] * sizes).sum() / sizes.sum())  # the divisor, by hand
        assert method.divisor()[i] == pytest.approx(m, rel=1e-12)
        got = engine.task_vector(i)
        for layer, k in enumerate(keys):
            by_hand = (ft[k].double() - pre[k].double()) * lam[i, layer] / m
            torch.testing.assert_close(got[k].double(), by_hand, rtol=1e-5, atol=1e-8)
    # c = divisor is the AdaMerging model itself: theta_pre + sum lambda_{i,l} tau_{i,l}
    plain = _engine(tiny)
    adamerging = am.merged_flat(plain.theta_pre, plain.tau, lam, am.Layout.of(plain))
    engine.set_coefficients(method.divisor())
    torch.testing.assert_close(engine._buffer(), adamerging, rtol=1e-5, atol=1e-7)


def test_equal_coefficients_give_plain_task_arithmetic(tiny):
    plain = _engine(tiny)
    engine = _engine(tiny)
    n_layers = len(engine.keys)
    method = _profile(engine, np.full((2, n_layers), 0.37))
    assert method.divisor() == pytest.approx([0.37, 0.37], rel=1e-12)
    engine.transform_tau(method.tau_transform())
    torch.testing.assert_close(engine.tau, plain.tau, rtol=1e-6, atol=0)
    # unnormalised, the profile is task arithmetic at c = 0.37 (the scale the divisor removes)
    profile = am.merged_flat(plain.theta_pre, plain.tau, np.full((2, n_layers), 0.37),
                             am.Layout.of(plain))
    plain.set_coefficients([0.37, 0.37])
    torch.testing.assert_close(plain._buffer(), profile, rtol=1e-6, atol=1e-7)


def test_a_learned_profile_travels_pickled_to_a_worker_s_engine(tiny, tmp_path):
    """What a Ray worker does with the spec's method: build its engine with the pickled
    object's transform; it must hold the driver's tau' (learned once, in the driver)."""
    settings = am.AdaMergingSettings(steps=3, batch_size=4, lr=0.05, checkpoint_every=1)
    driver = _engine(tiny)
    learned = AdaMergingProfile(settings).learn(driver, ["A", "B"], tmp_path)
    assert (tmp_path / STATE).exists()
    direct = am.learn(_engine(tiny), ["A", "B"], settings, progress=False)
    np.testing.assert_array_equal(np.array(learned.lambdas), direct.lambdas)
    assert not np.allclose(direct.lambdas, settings.prior)  # it did learn something
    driver.transform_tau(learned.tau_transform())
    worker = _engine(tiny, pickle.loads(pickle.dumps(learned)).tau_transform())
    torch.testing.assert_close(worker.tau, driver.tau, rtol=0, atol=0)
    # a second learn() reads the finished state: no step is taken
    again = AdaMergingProfile(settings).learn(_engine(tiny), ["A", "B"], tmp_path)
    assert again == learned and dict(again.learning)["resumed_from_step"] == 3


def test_the_settings_object_is_read_from_the_adamerging_flags():
    from args import build_parser

    args = build_parser().parse_args(["--merge-method", "adamerging", "--adamerging-steps",
                                      "7", "--adamerging-clamp", "0", "2", "--seed", "4"])
    method = method_from_flags("adamerging", vars(args))
    assert METHODS["adamerging"] is AdaMergingProfile and method.kind == "learned"
    assert method.adamerging == am.AdaMergingSettings(steps=7, low=0.0, high=2.0, seed=4)
    # the fingerprint: every setting that decides the profile, under its flag's dest
    assert method.record() == {
        "merge_method": "adamerging", "adamerging": "layer", "adamerging_prior": 0.3,
        "adamerging_lr": 1e-3, "adamerging_betas": [0.9, 0.999], "adamerging_steps": 7,
        "adamerging_batch_size": 16, "adamerging_clamp": [0.0, 2.0], "seed": 4}
    with pytest.raises(RuntimeError, match="learn"):
        method.tau_transform()
    with pytest.raises(MAPError, match="mean coefficient 0"):
        AdaMergingProfile(lambdas=((0.0, 0.0), (0.5, 0.1)), spans=((0, 2), (2, 3)))


# ------------------------------------------------------------------ the CLI, demo zoo
QUICK = ["--adamerging-steps", "4", "--adamerging-batch-size", "8", "--adamerging-lr", "0.05",
         "--adamerging-checkpoint-every", "2"]


def _argv(zoo_root, results: Path, *extra) -> list[str]:
    return ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--zeroshot-merge-models",
            *PAIR, "--merge-method", "adamerging", "--max-eval-samples", "60", "--point", "8",
            "--n-gen", "10", "--reevaluate", "2", "--results-path", str(results),
            "--exp-id", "profile", *QUICK, *PLAIN_MAP, *extra]


def _read(path: Path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def profile_run(tmp_path_factory, zoo_root) -> Path:
    import run_MAP

    results = tmp_path_factory.mktemp("profile_runs")
    assert run_MAP.main(_argv(zoo_root, results)) == 0
    return results


@pytest.mark.slow
def test_a_run_writes_its_front_and_records_the_learned_profile(profile_run, demo_zoo):
    from task_vectors.checkpoints import finetuned_path, head_path, zeroshot_path

    run = profile_run / "profile"
    info = _read(run / "run.json")
    method = info["merge_method"]
    assert method["merge_method"] == "adamerging" and method["adamerging_steps"] == 4
    learned = method["learned"]
    assert set(learned["coefficients"]) == set(PAIR) and learned["steps"] == 4
    assert (run / f"{'_'.join(PAIR)}pareto_front.json").exists()
    assert STATE in info["outputs"] and (run / STATE).exists()
    # an independent engine with the recorded profile gives the stored evaluations
    z = demo_zoo.path
    layers = learned["layers"]
    lam = [[learned["coefficients"][t][layer["name"]] for layer in layers] for t in PAIR]
    ends = np.cumsum([0] + [layer["params"] for layer in layers]).tolist()
    method = AdaMergingProfile(lambdas=tuple(map(tuple, lam)),
                               spans=tuple(zip(ends[:-1], ends[1:])))
    assert method.divisor() == pytest.approx([learned["divisor"][t] for t in PAIR])
    engine = MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zeroshot_path(z)),
        finetuned={t: str(finetuned_path(z, t)) for t in PAIR},
        heads={t: str(head_path(z, t)) for t in PAIR}, datasets=PAIR, data_location="",
        max_eval_samples=60, merge_method=method)
    stored = _read(run / f"{'_'.join(PAIR)}scaling_results.json")
    for entry in list(stored.values())[:3]:
        c = [entry["models"][t] for t in PAIR]
        direct = engine.evaluate_at(c, PAIR)
        for t in PAIR:
            assert entry["evals"][t]["accuracy"] == pytest.approx(direct[t]["accuracy"])


@pytest.mark.slow
def test_a_resumed_run_does_not_learn_again(profile_run, zoo_root, monkeypatch, capsys):
    import run_MAP

    def must_not_learn(*a, **k):
        raise AssertionError("learned again")

    monkeypatch.setattr(am.EntropyObjective, "gradient", must_not_learn)
    assert run_MAP.main(_argv(zoo_root, profile_run)) == 0
    learned = _read(profile_run / "profile" / "run.json")["merge_method"]["learned"]
    assert learned["resumed_from_step"] == 4
    capsys.readouterr()
    # other AdaMerging settings: refused by the fingerprint, one line naming the flag
    assert run_MAP.main([*_argv(zoo_root, profile_run), "--adamerging-lr", "0.01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--adamerging-lr 0.05, this run has 0.01" in err[0]


@pytest.mark.parametrize("extra, message", [
    (["--adamerging", "task"], r"learns layer-wise profiles .* drop --adamerging task"),
    (["--adamerging-clamp", "1", "0"], r"--adamerging-clamp 1.0 0.0: LOW must be below HIGH"),
    (["--adamerging-prior", "0.2", "--adamerging-clamp", "0.5", "1"],
     r"--adamerging-prior 0.2 lies outside"),
    (["--adamerging-steps", "0"], r"--adamerging-steps: must be a positive integer, got 0"),
    (["--adamerging-lr", "fast"], r"--adamerging-lr: expected a number, got 'fast'"),
    (["--method", "adamerging"], r"--method adamerging learns on task vectors as fine-tuned "
                                 r".* not adamerging"),
    (["--baselines"], r"--baselines evaluates the merges of the plain task vectors"),
])
def test_bad_flags_are_one_line_exit_2_and_write_nothing(extra, message, run_cli, capsys,
                                                         tmp_path, zoo_root):
    assert_refused_in_one_line(run_cli, capsys, tmp_path, message, "--demo", "--zoo-dir",
                               zoo_root, "--method", "map", "--merge-method", "adamerging",
                               "--results-path", tmp_path / "results", "--exp-id", "bad",
                               *extra)
