"""A mistake on the command line is refused before torch is imported (under a second, where
importing torch alone takes more), called a model or a dataset as its flag says, and the
closest known names are suggested. The names the parser and the config check without torch
are the registry's."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# run_MAP.main in a fresh interpreter; reports whether torch (or open_clip) was imported
PROBE = ("import sys, run_MAP; rc = run_MAP.main(sys.argv[1:]); "
         "print('HEAVY', sorted({'torch', 'open_clip'} & set(sys.modules)));"
         "sys.exit(rc)")


def _refuse(tmp_path, *argv, heavy: str = "[]") -> str:
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-c", PROBE, *map(str, argv), "--results-path",
                           str(results), "--exp-id", "bad"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.strip() == f"HEAVY {heavy}", (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert not (results / "bad").exists()
    return lines[0]


def test_a_mistyped_demo_model_is_a_model_with_the_closest_name(tmp_path):
    line = _refuse(tmp_path, "--demo", "--method", "map", "--zeroshot-merge-models",
                   "LetterVal", "DigitVa")
    assert line == ("run_MAP.py: error: unknown model 'DigitVa' in --zeroshot-merge-models "
                    "(a model of the demo zoo); did you mean DigitVal?")


def test_a_mistyped_eval_dataset_is_a_dataset_with_the_closest_names(tmp_path):
    line = _refuse(tmp_path, "--demo", "--method", "map", "--zeroshot-merge-models",
                   "LetterVal", "DigitVal", "--zeroshot-eval-datasets", "LetterVal", "SVHVal")
    assert line.startswith("run_MAP.py: error: unknown dataset 'SVHVal' in "
                           "--zeroshot-eval-datasets; did you mean SVHNVal")


def test_a_real_model_name_without_a_close_match_lists_the_known_ones(tmp_path):
    line = _refuse(tmp_path, "--method", "map", "--zeroshot-merge-models", "Imagenet", "Cars")
    from task_vectors import names

    known = ", ".join(names.dataset_names())
    assert line.endswith("unknown model 'Imagenet' in --zeroshot-merge-models (a model is named "
                         f"by its dataset); known models: {known}")


@pytest.mark.parametrize("argv, message", [
    (["--demo", "--point", "0"], "argument --point: must be a positive integer, got 0"),
    (["--demo", "--merge-method", "tie"], "argument --merge-method: invalid choice: 'tie'"),
    (["--demo", "--bounds", "1", "0"], "--bounds 1.0 0.0: LOW must be below HIGH"),
    (["--demo", "--method", "map", "--truth", "/nonexistent/grid"],
     "grid run (--truth) not found: /nonexistent/grid"),
    (["--demo", "--method", "grid", "--baselines"], "--baselines goes with --method map"),
    (["--demo", "--merge-method", "adamerging", "--adamerging-clamp", "1", "0"],
     "--adamerging-clamp 1.0 0.0: LOW must be below HIGH"),
    (["--demo", "--method", "map", "--preference", "/nonexistent.yaml"],
     "preference file not found"),
    (["--demo", "--method", "grid", "--report-test"],
     "--report-test goes with --method map, bayesian, nested or adamerging (the model it "
     "hands over, "
     "beside task arithmetic and the pretrained model), not grid"),
    (["--demo", "--method", "map", "--report-test", "--zeroshot-merge-models", "LetterVal",
      "DigitVal", "--zeroshot-eval-datasets", "LetterVal", "Digit"],
     "--report-test: Digit is not a <Dataset>Val validation set, so it has no separate test "
     "split to report on"),
])
def test_parser_and_config_refusals_import_no_torch(tmp_path, argv, message):
    assert message in _refuse(tmp_path, *argv)


def test_a_missing_checkpoint_is_refused_before_torch_is_imported(tmp_path):
    line = _refuse(tmp_path, "--method", "map", "--save", "/nonexistent/ckpts")
    assert "pretrained checkpoint (--pretrained-checkpoint) not found" in line


def test_the_light_name_lists_are_the_registry_s():
    from src.run import names as src_names
    from src.core.front import PICK_FLOORS, PICK_FROM
    from src.core.pareto import PICK_METHODS
    from task_vectors import names
    from task_vectors.datasets import demo, registry, standard

    assert names.dataset_names() == registry.dataset_names()
    assert set(names.DEMO_DATASETS) == set(demo.DEMO_TASKS)
    assert set(names.STANDARD_DATASETS) == set(standard.STANDARD_DATASETS)
    assert src_names.PICKS == tuple(PICK_METHODS)
    assert src_names.PICK_FROM == PICK_FROM
    assert src_names.PICK_FLOORS == PICK_FLOORS
    from src.core.nested import CONTEXTS
    assert src_names.NESTED_CONTEXTS == CONTEXTS
    from src.core.acquisition import REFINE_ACQUISITIONS
    assert src_names.REFINE_ACQUISITIONS == REFINE_ACQUISITIONS
