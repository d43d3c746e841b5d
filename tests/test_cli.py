"""run_MAP.py as a user meets it: bad input is one line and exit 2 with nothing written;
--help lists every flag of the original tool; the defaults are the original's."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_TASKS = ["LetterVal", "DigitVal", "ShapeVal", "ColorVal", "TextureVal", "PositionVal",
              "ArrowVal", "SymbolVal"]
ORIGINAL_FLAGS = [
    "--data-location", "--eval-datasets", "--train-dataset", "--exp_name", "--results-db",
    "--model", "--batch-size", "--lr", "--wd", "--ls", "--warmup_length", "--epochs",
    "--load", "--save", "--cache-dir", "--method", "--pretrained-checkpoint",
    "--openclip-cachedir", "--results-path", "--point", "--metric-type", "--exp-id",
    "--zeroshot-eval-datasets", "--zeroshot-merge-models", "--preference", "--bayes-iter",
    "--bayes-update-pts", "--bayes-initial-pts",
]


def _flag(flag: str) -> re.Pattern:
    # "--eval-datasets" must not match inside "--zeroshot-eval-datasets", nor "--lr" in "--lrx".
    return re.compile(rf"(?<![\w-]){re.escape(flag)}(?![\w-])")


# ------------------------------------------------------------------ bad input
def _pref(tmp: Path, text: str, name: str = "pref.yaml") -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def _empty_save(tmp: Path) -> str:
    (tmp / "empty").mkdir()
    return str(tmp / "empty")


def _save_with_only_zeroshot(tmp: Path, zoo: Path) -> str:
    # The pretrained checkpoint is there, the fine-tuned ones are not.
    (tmp / "partial").mkdir()
    shutil.copy(zoo / "zeroshot.pt", tmp / "partial" / "zeroshot.pt")
    return str(tmp / "partial")


NESTED4 = ["--zeroshot-merge-models", "LetterVal", "DigitVal", "ShapeVal", "SymbolVal"]
PAIR = ["--zeroshot-merge-models", "LetterVal", "DigitVal"]

# (id, argv builder (tmp, zoo path) -> argv without --results-path/--exp-id, message regex)
BAD_INPUT: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    ("unknown-dataset", lambda t, z: ["--demo", "--method", "map", "--zeroshot-merge-models",
                                      "NoSuchVal", "DigitVal"], r"unknown model 'NoSuchVal'"),
    ("unknown-eval-dataset", lambda t, z: ["--demo", "--method", "map", *PAIR,
                                           "--zeroshot-eval-datasets", "LetterVal", "Nope"],
     r"unknown dataset 'Nope'"),
    ("counts-differ", lambda t, z: ["--demo", "--method", "map", *PAIR,
                                    "--zeroshot-eval-datasets", "LetterVal"],
     r"2 merge models .* 1 eval datasets"),
    ("point-below-params-map", lambda t, z: ["--demo", "--method", "map", "--point", "5"],
     r"--point 5 .*6 parameters"),
    ("point-zero", lambda t, z: ["--demo", "--method", "map", "--point", "0"],
     r"argument --point: must be a positive integer, got 0"),
    ("point-negative-nested", lambda t, z: ["--demo", "--point", "-3"],
     r"argument --point: must be a positive integer, got -3"),
    ("metric-type", lambda t, z: ["--demo", "--method", "map", "--metric-type", "f1"],
     r"argument --metric-type: invalid choice: 'f1' \(choose from 'accuracy', 'entropy', 'loss'\)"),
    ("device-not-a-device", lambda t, z: ["--demo", "--method", "map", "--device", "gpu0"],
     r"--device gpu0: not a device"),
    ("missing-pretrained", lambda t, z: ["--method", "map", "--save", _empty_save(t), *PAIR],
     r"pretrained checkpoint.*not found: .*empty/zeroshot\.pt"),
    ("missing-finetuned", lambda t, z: ["--method", "map", "--save",
                                        _save_with_only_zeroshot(t, z), *PAIR],
     r"fine-tuned checkpoint of 'LetterVal' not found: .*partial/LetterVal/finetuned\.pt"),
    ("preference-missing", lambda t, z: ["--demo", "--preference", str(t / "nope.yaml")],
     r"preference file not found: .*nope\.yaml"),
    ("preference-not-mapping", lambda t, z: ["--demo", "--preference",
                                             _pref(t, "- LetterVal\n- DigitVal\n")],
     r"must map dataset names to weights, got list"),
    ("preference-lacks-dataset", lambda t, z: ["--demo", *NESTED4, "--preference", _pref(
        t, "LetterVal: 1\nDigitVal: 1\nSymbolVal: 1\n")], r"no weight for task 'ShapeVal'"),
    ("preference-negative", lambda t, z: ["--demo", *NESTED4, "--preference", _pref(
        t, "LetterVal: 1\nDigitVal: -0.5\nShapeVal: 1\nSymbolVal: 1\n")],
     r"'DigitVal' must be a finite number >= 0, got -0\.5"),
    ("preference-non-numeric", lambda t, z: ["--demo", *NESTED4, "--preference", _pref(
        t, "LetterVal: high\nDigitVal: 1\nShapeVal: 1\nSymbolVal: 1\n")],
     r"'LetterVal' must be a number, got 'high'"),
    ("preference-invalid-yaml", lambda t, z: ["--demo", "--preference",
                                              _pref(t, "LetterVal: [1\n")], r"not valid YAML"),
    ("single-task-nested", lambda t, z: ["--demo", "--zeroshot-merge-models", "LetterVal"],
     r"at least 2 models; got 1"),
    ("single-task-map", lambda t, z: ["--demo", "--method", "map", "--zeroshot-merge-models",
                                      "LetterVal"], r"at least 2 models; got 1"),
    ("bayes-iter-zero", lambda t, z: ["--demo", "--method", "bayesian", "--bayes-iter", "0"],
     r"argument --bayes-iter: must be a positive integer, got 0"),
    ("bayes-update-negative", lambda t, z: ["--demo", "--method", "bayesian",
                                            "--bayes-update-pts", "-2"],
     r"argument --bayes-update-pts: must be a positive integer, got -2"),
    ("bayes-initial-zero", lambda t, z: ["--demo", "--method", "bayesian",
                                         "--bayes-initial-pts", "0"],
     r"argument --bayes-initial-pts: must be a positive integer, got 0"),
    ("bayes-initial-below-params", lambda t, z: ["--demo", "--method", "bayesian",
                                                 "--bayes-initial-pts", "5"],
     r"n_initial=5 is too small.*at least 6"),
    ("bayes-initial-below-params-3", lambda t, z: ["--demo", "--method", "bayesian",
                                                   "--zeroshot-merge-models", *DEMO_TASKS[:3],
                                                   "--bayes-initial-pts", "9"],
     r"n_initial=9 is too small.*at least 10"),
    ("bayes-seven-tasks", lambda t, z: ["--demo", "--method", "bayesian",
                                        "--zeroshot-merge-models", *DEMO_TASKS[:7]],
     r"at most 6 tasks, got 7"),
]


@pytest.mark.parametrize("build, message", [case[1:] for case in BAD_INPUT],
                         ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(build, message, run_cli, capsys,
                                                        tmp_path, demo_zoo, zoo_root):
    argv = build(tmp_path, demo_zoo.path)
    results = tmp_path / "results"
    rc = run_cli(*argv, "--zoo-dir", zoo_root, "--results-path", results, "--exp-id", "bad")
    out, err = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("run_MAP.py: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (results / "bad").exists()


def test_bad_input_real_process_exit_code_and_no_traceback(tmp_path, zoo_root):
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "run_MAP.py", "--demo", "--zoo-dir", zoo_root, "--method", "map",
         "--zeroshot-merge-models", "NoSuchVal", "DigitVal", "--results-path", str(results),
         "--exp-id", "bad"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("run_MAP.py: error: unknown model 'NoSuchVal'")
    assert not (results / "bad").exists()


# ------------------------------------------------------------------ --help
def test_help_lists_every_original_flag_exactly_once(run_cli, capsys):
    assert run_cli("--help") == 0
    text = capsys.readouterr().out
    usage, _, options = text.partition("\n\n")
    assert usage.startswith("usage: run_MAP.py")
    # Each option's own entry starts a line; other help texts may mention it in passing.
    entries = [line.split()[0].rstrip(",") for line in options.splitlines()
               if line.startswith("  -")]
    for flag in ORIGINAL_FLAGS:
        assert len(_flag(flag).findall(usage)) == 1, f"{flag} in usage"
        assert entries.count(flag) == 1, f"{flag} entries"


# ------------------------------------------------------------------ defaults
def test_defaults_are_the_original_tool(tmp_path):
    from args import parse_arguments

    before = int(time.time() * 1000)
    args = parse_arguments([])
    after = int(time.time() * 1000)
    assert args.method == "nested"
    assert args.model == "ViT-B-32"
    assert args.save == "/checkpoints/ViT-B-32"
    assert args.pretrained_checkpoint is None
    assert args.results_path == "nested_experiments4"
    assert re.fullmatch(r"[0-9a-f]+", args.exp_id)
    assert before <= int(args.exp_id, 16) <= after
    assert args.metric_type == "accuracy"


def test_default_models_and_checkpoint_folder(tmp_path):
    """Resolved with nothing but a checkpoint folder: the 4 original datasets, in order,
    read from <save>/<Dataset>/finetuned.pt; <save>/zeroshot.pt is the pretrained model."""
    from args import DEFAULTS, parse_arguments
    from src.run.config import build_config

    datasets = ["SUN397Val", "CarsVal", "DTDVal", "SVHNVal"]
    save = tmp_path / "ckpt"
    for d in datasets:
        (save / d).mkdir(parents=True)
        (save / d / "finetuned.pt").write_bytes(b"")
    (save / "zeroshot.pt").write_bytes(b"")
    setup = build_config(parse_arguments(["--save", str(save), "--results-path",
                                          str(tmp_path / "r"), "--preference",
                                          str(REPO / "example_preference.yaml")]), DEFAULTS)
    assert list(setup.models) == datasets and list(setup.datasets) == datasets
    assert setup.source.pretrained == str(save / "zeroshot.pt")
    assert setup.method == "nested" and setup.source.model_name == "ViT-B-32"
    assert not (tmp_path / "r").exists()


def test_bare_run_looks_for_checkpoints_under_checkpoints_vit_b_32(run_cli, capsys, tmp_path,
                                                                   monkeypatch):
    """A bare run reads /checkpoints/ViT-B-32 and /data (the original's defaults); where
    they are missing, the first missing file is one line. The folder is redirected so the
    test means the same on a machine that has real checkpoints there."""
    from args import parse_arguments
    from task_vectors import checkpoints

    args = parse_arguments([])
    assert (args.save, args.data_location, args.method) == ("/checkpoints/ViT-B-32", "/data",
                                                            "nested")
    missing = tmp_path / "absent"
    monkeypatch.setattr(checkpoints, "zeroshot_path", lambda save: missing / "zeroshot.pt")
    monkeypatch.chdir(REPO)  # the default --preference is relative to the working directory
    rc = run_cli("--results-path", tmp_path / "r", "--exp-id", "x", "--save", missing)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip() == ("run_MAP.py: error: pretrained checkpoint (--pretrained-checkpoint) "
                           f"not found: {missing / 'zeroshot.pt'}")
    assert not (tmp_path / "r").exists()
