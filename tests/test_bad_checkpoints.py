"""Broken checkpoint files, as a user's disk has them: each is one line on stderr naming the
file, exit code 2, no traceback, and no run directory left behind.

These rows rely on the model layer's checks (task_vectors/checkpoints.py, engine.py): files
that are empty, truncated, text, garbage, of the wrong shapes or with non-finite weights,
and heads whose class count does not fit the dataset."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch

PAIR = ["LetterVal", "DigitVal"]


def _save_folder(tmp: Path, zoo: Path) -> Path:
    """A copy of the zoo's checkpoints for the pair (links; the broken one replaces its link)."""
    save = tmp / "save"
    (save).mkdir()
    (save / "zeroshot.pt").symlink_to(zoo / "zeroshot.pt")
    for task in PAIR:
        (save / task).mkdir()
        (save / task / "finetuned.pt").symlink_to(zoo / task / "finetuned.pt")
        (save / f"head_{task}.pt").symlink_to(zoo / f"head_{task}.pt")
    return save


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def _state_dict(zoo: Path) -> dict[str, torch.Tensor]:
    from task_vectors.checkpoints import encoder_keys, load_state_dict

    return encoder_keys(load_state_dict(zoo / "LetterVal" / "finetuned.pt"))


def _as_safetensors(save: Path, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    (save / "LetterVal" / "finetuned.pt").unlink()
    save_file({k: v.contiguous() for k, v in state.items()},
              str(save / "LetterVal" / "finetuned.safetensors"))


def empty(save: Path, zoo: Path) -> None:
    _replace(save / "LetterVal" / "finetuned.pt", b"")


def truncated(save: Path, zoo: Path) -> None:
    data = (zoo / "LetterVal" / "finetuned.pt").read_bytes()
    _replace(save / "LetterVal" / "finetuned.pt", data[: len(data) // 2])


def text_file(save: Path, zoo: Path) -> None:
    _replace(save / "LetterVal" / "finetuned.pt", b"see https://example.org/weights\n")


def empty_pretrained(save: Path, zoo: Path) -> None:
    _replace(save / "zeroshot.pt", b"")


def garbage_safetensors(save: Path, zoo: Path) -> None:
    (save / "LetterVal" / "finetuned.pt").unlink()
    (save / "LetterVal" / "finetuned.safetensors").write_bytes(b"\x08\x00\x00\x00garbage!!")


def wrong_shape(save: Path, zoo: Path) -> None:
    state = _state_dict(zoo)
    key = next(k for k, v in state.items() if v.ndim == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    _as_safetensors(save, state)


def nan_weights(save: Path, zoo: Path) -> None:
    state = _state_dict(zoo)
    key = next(k for k, v in state.items() if v.ndim == 2)
    state[key] = torch.full_like(state[key], float("nan"))
    _as_safetensors(save, state)


def inf_weights(save: Path, zoo: Path) -> None:
    state = _state_dict(zoo)
    key = next(k for k, v in state.items() if v.ndim == 2)
    state[key] = state[key].clone()
    state[key][0, 0] = float("inf")
    _as_safetensors(save, state)


def head_wrong_classes(save: Path, zoo: Path) -> None:
    from task_vectors.checkpoints import load_head

    head = load_head(zoo / "head_LetterVal.pt")
    (save / "head_LetterVal.pt").unlink()
    torch.save({"weight": head.weight.detach()[:3].clone()}, save / "head_LetterVal.pt")


def head_text_file(save: Path, zoo: Path) -> None:
    _replace(save / "head_LetterVal.pt", b"not a head\n")


CASES: list[tuple[str, Callable[[Path, Path], None], str]] = [
    ("empty", empty, r"LetterVal/finetuned\.pt"),
    ("truncated", truncated, r"LetterVal/finetuned\.pt"),
    ("text-file", text_file, r"LetterVal/finetuned\.pt"),
    ("empty-pretrained", empty_pretrained, r"zeroshot\.pt"),
    ("garbage-safetensors", garbage_safetensors, r"LetterVal/finetuned\.safetensors"),
    ("wrong-shape", wrong_shape, r"LetterVal/finetuned\.safetensors.*shape"),
    ("nan-weights", nan_weights, r"LetterVal/finetuned\.safetensors.*(NaN|nan|finite)"),
    ("inf-weights", inf_weights, r"LetterVal/finetuned\.safetensors.*(inf|finite)"),
    ("head-wrong-classes", head_wrong_classes, r"head_LetterVal\.pt.*(3|26) classes"),
    ("head-text-file", head_text_file, r"head_LetterVal\.pt"),
]


@pytest.mark.parametrize("breaker, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_checkpoint_is_one_line_exit_2_and_leaves_no_run_directory(
        breaker, message, run_cli, capsys, tmp_path, demo_zoo, one_thread):
    zoo = demo_zoo.path
    save = _save_folder(tmp_path, zoo)
    breaker(save, zoo)
    pref = tmp_path / "pref.yaml"
    pref.write_text("LetterVal: 1\nDigitVal: 1\n")
    results = tmp_path / "results"
    rc = run_cli("--method", "map", "--model", f"local-dir:{zoo / 'clip'}", "--save", save,
                 "--data-location", zoo, "--device", "cpu", "--zeroshot-merge-models", *PAIR,
                 "--preference", pref, "--n-gen", 5, "--reevaluate", 0,
                 "--results-path", results, "--exp-id", "bad")
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("run_MAP.py: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not results.exists()
    shutil.rmtree(save)
