"""A new merge method and a new mode through the registries alone: nothing but this file
defines them, and the command line, the config, the fingerprint, run.json and the engine
take them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial

import numpy as np
import pytest

from task_vectors.merge_methods import METHODS, MergeMethod, setting

PAIR = ["LetterVal", "DigitVal"]


def _scale_(tau, scale: float):
    return tau.mul_(scale)


@dataclass(frozen=True)
class ToyScale(MergeMethod):
    """Every task vector scaled by one factor."""

    name = "toy-scale"
    label = "Toy"
    help = "toy-scale (every task vector times --toy-scale)"
    scale: float = setting(1.0, flag="--toy-scale", low=0.0, high=4.0, low_open=True,
                           help="Toy: the factor.")

    def tau_transform(self):
        return partial(_scale_, scale=float(self.scale))


def toy_run(config) -> dict:
    """A mode that evaluates the merge c = (1, ..., 1) and records it."""
    from src.run.evaluation import evaluate_metric
    from src.modes.common import finish, open_run

    with open_run(config) as ctx:
        Y = evaluate_metric(config, ctx.evaluator, ctx.store(), np.ones((1, config.T)))
        return finish(ctx, {"n_evaluations": 1, "metric": Y[0].tolist()}, show=False)


@pytest.fixture
def toys():
    from src.run.mode_registry import MODES, Mode

    METHODS.register(ToyScale)
    MODES.register(Mode("toy", "evaluate c = (1, ..., 1)", toy_run))
    try:
        yield
    finally:
        METHODS.pop("toy-scale")
        MODES.pop("toy")


def test_a_registered_method_and_mode_get_their_flags_and_checks(toys, run_cli, capsys):
    from args import build_parser

    usage = " ".join(build_parser().format_help().split())
    assert "--toy-scale" in usage and "toy-scale (every task vector" in usage
    assert "toy: evaluate c = (1, ..., 1)" in usage
    assert run_cli("--demo", "--method", "toy", "--merge-method", "toy-scale",
                   "--toy-scale", "9") == 2
    assert "--toy-scale: must be in (0, 4], got 9" in capsys.readouterr().err
    # what the toy mode does not support is refused by the config's generic checks
    assert run_cli("--demo", "--method", "toy", "--refine-rounds", "1") == 2
    assert "--refine-rounds refines a map or bayesian front; --method toy" in \
        capsys.readouterr().err
    assert run_cli("--demo", "--method", "toy", "--design", "lhs") == 2
    assert "--design goes with --method map or bayesian (bayesian: its first round); " \
        "--method toy has its own design" in capsys.readouterr().err


def test_flags_of_other_modes_are_noted_as_unread(toys):
    """Before, --bayes-iter with --method map (or --grid-points-per-axis with map, --point
    with bayesian) changed nothing and said nothing. The original tool accepted them, so they are accepted, with a
    note each; a flag another mode owns but this one reads (bayesian's --design) is none."""
    from args import parse_arguments
    from src.run.mode_registry import unread_flags

    def notes(*argv):
        args = parse_arguments(["--demo", *argv])
        return unread_flags(args, args.method)

    assert notes("--method", "map", "--bayes-iter", "3", "--grid-points-per-axis", "4") == [
        "--bayes-iter is a flag of --method bayesian; --method map does not read it",
        "--grid-points-per-axis is a flag of --method grid; --method map does not read it"]
    assert notes("--sweep", "pairs", "--bayes-acquisition", "ehvi") == [
        "--bayes-acquisition is a flag of --method bayesian; --method map does not read it"]
    assert notes("--method", "bayesian", "--bayes-iter", "3", "--design", "lhs") == []
    assert notes("--method", "grid", "--grid-points-per-axis", "4") == []
    assert notes("--method", "map", "--design", "lhs", "--point", "12") == []
    # --point sets map's design and nested's pairs; bayesian's budget is its --bayes-* flags
    assert notes("--method", "nested", "--point", "20") == []
    for method in ("bayesian", "grid", "adamerging", "toy"):
        assert notes("--method", method, "--point", "12") == [
            f"--point sets the merges of --method map and nested; --method {method} does not "
            "read it"]


@pytest.mark.slow
def test_a_registered_method_and_mode_run_end_to_end(toys, run_cli, zoo_root, tmp_path,
                                                     demo_zoo, one_thread, capsys):
    from task_vectors.engine import MergeEngine

    assert run_cli("--demo", "--zoo-dir", zoo_root, "--method", "toy",
                   "--zeroshot-merge-models", *PAIR, "--merge-method", "toy-scale",
                   "--toy-scale", "0.5", "--results-path", tmp_path, "--exp-id", "toy",
                   "--bayes-iter", "2") == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert notes == ["run_MAP.py: note: --bayes-iter is a flag of --method bayesian; "
                     "--method toy does not read it"], notes
    run = tmp_path / "toy"
    info = json.loads((run / "run.json").read_text())
    assert info["method"] == "toy"
    assert info["merge_method"] == {"merge_method": "toy-scale", "toy_scale": 0.5}
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    assert fingerprint["settings"]["toy_scale"] == 0.5
    stored = json.loads((run / f"{'_'.join(PAIR)}scaling_results.json").read_text())["0"]
    assert stored["models"] == {m: 1.0 for m in PAIR}
    # c = (1, 1) on the halved task vectors is c = (0.5, 0.5) on the plain ones
    zoo = demo_zoo.path
    engine = MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zoo / "zeroshot.pt"),
        finetuned={t: str(zoo / t / "finetuned.pt") for t in PAIR},
        heads={d: str(zoo / f"head_{d}.pt") for d in PAIR}, datasets=PAIR,
        data_location=str(zoo))
    plain = engine.evaluate_at(np.array([0.5, 0.5]), PAIR)
    for d in PAIR:
        assert stored["evals"][d]["accuracy"] == pytest.approx(plain[d]["accuracy"], abs=1e-9)
        assert stored["evals"][d]["loss"] == pytest.approx(plain[d]["loss"], rel=1e-5)
