"""Small helpers shared by the test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

# --max-eval-samples for demo runs whose checks need no precise accuracy (files, flags,
# resume, plumbing, values against an engine built with the same cap): the zoo's sets hold
# 1,200 images and a run's time grows with them (decoding and every forward pass).
FEW_IMAGES = 200
# map's plain design without refinement (its defaults from 4 tasks on), for the tests whose
# counts and files are those of a design alone; the 2-3 task defaults (lhs, two EHVI
# refinement rounds) are tested in test_map_defaults.py.
PLAIN_MAP = ["--design", "grid", "--refine-rounds", "0"]


class CountingEvaluate:
    """Stands in for MergeEngine.evaluate: counts calls; raises KeyboardInterrupt (a user's
    Ctrl-C) on the call after `stop_after`."""

    def __init__(self, original, stop_after: int | None = None):
        self.original, self.stop_after, self.calls = original, stop_after, 0

    def __call__(self, engine, *args, **kwargs):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.original(engine, *args, **kwargs)

    def __get__(self, engine, owner=None):  # bind like a method when set on the class
        return self if engine is None else functools.partial(self, engine)


def files_but_lock(folder: Path) -> dict[Path, int]:
    """Each file's mtime under ``folder``, the lock aside (a refused run still takes it and
    writes its pid there): equal before and after means the run wrote nothing."""
    return {p: p.stat().st_mtime_ns for p in Path(folder).rglob("*")
            if p.is_file() and p.name != ".lock"}


def no_loading(*args, **kwargs):
    """Stands in for open_evaluator: a refusal must come before the models are loaded."""
    raise AssertionError("loaded the models before refusing")


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains ``text`` (to find and clean up the
    Ray processes a test started)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def kill_processes_mentioning(text: str) -> None:
    """SIGKILL what processes_mentioning(text) finds: only what the test started."""
    for pid in processes_mentioning(text):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def wait_for_exit(pids: list[int], hang_limit: float = 300.0) -> list[int]:
    """Wait for each process to exit, on the exit itself (a pidfd becomes readable when
    its process ends), not on a fixed delay; ``hang_limit`` only keeps a process that never
    ends from blocking the suite. Returns the pids still running after it."""
    import select
    import time

    end = time.monotonic() + hang_limit
    alive = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # already gone
        try:
            if not select.select([fd], [], [], max(0.0, end - time.monotonic()))[0]:
                alive.append(pid)
        finally:
            os.close(fd)
    return alive


def file_tree(folder: Path) -> set[str]:
    """Every path below ``folder``, relative to it: to check a refused run wrote nothing."""
    return {str(p.relative_to(folder)) for p in Path(folder).rglob("*")}


def random_tiny_clip(folder: Path, n_finetuned: int, *, scale: float = 0.05, generator=None):
    """A randomly initialised tiny open_clip encoder (the demo zoo's config) as a local-dir
    model in ``folder``: (encoder, its state, ``n_finetuned`` fine-tuned states = state +
    ``scale`` * N(0, 1) on every floating tensor). ``generator`` (torch, seed 1 if None)
    draws the noise and goes on for the caller's heads and data."""
    import json

    import torch

    from task_vectors.modeling import ImageEncoder
    from task_vectors.zoo import MODEL_CFG, PREPROCESS_CFG

    (Path(folder) / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}))
    torch.manual_seed(0)
    encoder = ImageEncoder(f"local-dir:{folder}")
    pre = {k: v.clone() for k, v in encoder.state_dict().items()}
    gen = generator if generator is not None else torch.Generator().manual_seed(1)
    fts = [{k: v + scale * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
            for k, v in pre.items()} for _ in range(n_finetuned)]
    return encoder, pre, fts


def assert_refused_in_one_line(run_cli, capsys, folder: Path, message: str, *argv) -> None:
    """``run_MAP.py argv`` exits 2 with one line on stderr matching the regex ``message``,
    no traceback, nothing on stdout and nothing written below ``folder``."""
    import re

    before = file_tree(folder)
    rc = run_cli(*argv)
    out, err = capsys.readouterr()
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and out == ""
    assert re.search(message, lines[0]), lines[0]
    assert file_tree(folder) == before


def check_final_model_file(run_dir: Path, zoo: Path, tasks: list[str]) -> None:
    """final_model/finetuned.pt is θ_pre + Σ c_t τ_t of the zoo's own files, c from
    final_model/merge.json (plain task vectors: --merge-method ta)."""
    import json

    import torch

    from task_vectors.checkpoints import load_state_dict

    coefficients = json.loads((run_dir / "final_model" / "merge.json").read_text())["coefficients"]
    saved = load_state_dict(run_dir / "final_model" / "finetuned.pt")
    pre = load_state_dict(zoo / "zeroshot.pt")
    finetuned = {t: load_state_dict(zoo / t / "finetuned.pt") for t in tasks}
    assert set(saved) == set(pre)
    merged_keys = 0
    for key, p in pre.items():
        if not torch.is_floating_point(p):
            assert torch.equal(saved[key], p), key
            continue
        expected = p.double() + sum(coefficients[t] * (finetuned[t][key].double() - p.double())
                                    for t in tasks)
        torch.testing.assert_close(saved[key].double(), expected, atol=1e-5, rtol=1e-5,
                                   msg=key)
        merged_keys += any(not torch.equal(finetuned[t][key], p) for t in tasks)
    assert merged_keys > 10  # the check above compared real task vectors, not zeros


def zoo_engine(zoo, tasks: list[str], heads: dict[str, str] | None = None,
               pretrained: str | None = None, **options):
    """An engine of the test's own on the demo zoo's files (not the pipeline's builder):
    the tasks' fine-tuned models, ``heads`` (dataset -> the zoo task whose head scores it;
    default each task's own) and their sets, ``pretrained`` (default the zoo's)."""
    from task_vectors.engine import MergeEngine

    root = zoo.path
    heads = heads or {t: t for t in tasks}
    return MergeEngine.from_checkpoints(
        model_name=zoo.model_name, pretrained=pretrained or str(root / "zeroshot.pt"),
        finetuned={t: str(root / t / "finetuned.pt") for t in tasks},
        heads={d: str(root / f"head_{h}.pt") for d, h in heads.items()}, datasets=list(heads),
        data_location=str(root), **options)
