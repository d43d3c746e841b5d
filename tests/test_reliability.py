"""Resume never mixes settings, one run per directory, kills and signals.

The fingerprint and lock are checked directly and through run_MAP (in-process); kill -9
and SIGTERM need a real process, which waits at a known point for the signal."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import FEW_IMAGES, PLAIN_MAP, CountingEvaluate
from map_common.errors import MAPError
from src.run.fingerprint import (FINGERPRINT, check_fingerprint, evaluation_fingerprint,
                             fingerprint_changes, record_fingerprint)
from src.run.run_lock import LOCK, RunLock

REPO = Path(__file__).resolve().parent.parent
NAMES = "LetterVal_DigitVal"
N_POINTS = 12  # the default design for 2 tasks

# run_MAP in a child process that stops at a known point: once `hold` points are stored
# (journal lines), the next evaluation touches `marker` and waits there for the test's
# signal. The test waits on the marker (the event), so the signal always lands mid-run
# with exactly `hold` points stored, however loaded the machine is.
HELD_RUN = """
import sys, time
from pathlib import Path
from task_vectors.engine import MergeEngine
hold, journal, marker = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
original = MergeEngine.evaluate
def held(self, *args, **kwargs):
    stored = journal.read_bytes().count(b"\\n") if journal.exists() else 0
    if stored >= hold:
        marker.touch()
        while True:
            time.sleep(1)  # until SIGKILL / SIGTERM
    return original(self, *args, **kwargs)
MergeEngine.evaluate = held
import run_MAP
sys.exit(run_MAP.main(sys.argv[4:]))
"""
HOLD_LOCK = """
import sys, time
from src.run.run_lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _argv(zoo_root: str, results: Path, exp_id: str, *extra,
          images: int | None = FEW_IMAGES) -> list[str]:
    cap = [] if images is None else ["--max-eval-samples", str(images)]
    return ["--demo", "--zoo-dir", zoo_root, "--method", "map", "--n-gen", "10",
            "--reevaluate", "0", *cap, "--results-path", str(results), "--exp-id", exp_id,
            *PLAIN_MAP, *extra]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file's size and mtime, but the lock's (it names whoever holds it last)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.name != LOCK}


def _journal_lines(run_dir: Path) -> int:
    try:
        return (run_dir / f"{NAMES}scaling_results.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _start_held(argv: list[str], run_dir: Path, hold: int) -> tuple[subprocess.Popen, Path]:
    marker = run_dir.parent / f"{run_dir.name}.held"
    journal = run_dir / f"{NAMES}scaling_results.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", HELD_RUN, str(hold), str(journal),
                             str(marker), *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, marker


def _wait_until_held(proc: subprocess.Popen, marker: Path, hang_limit: float = 900) -> None:
    """Wait for the child to reach its hold (the event); ``hang_limit`` only stops a hung
    child from blocking the suite (the child cannot finish the run before it)."""
    end = time.monotonic() + hang_limit
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the child hung before storing its points"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, zoo_root) -> Path:
    """An uninterrupted run: the front every interrupted-then-resumed run must match."""
    import run_MAP

    results = tmp_path_factory.mktemp("reference")
    assert run_MAP.main(_argv(zoo_root, results, "full")) == 0
    return results / "full"


# ------------------------------------------------------------------ fingerprint
def _fp(tmp: Path, **change) -> dict:
    kwargs = dict(checkpoints={"pretrained checkpoint": tmp / "zeroshot.pt",
                               "head of AVal": tmp / "head_AVal.pt"},
                  datasets=["AVal", "BVal"], data_location="/data", max_eval_samples=None,
                  settings={"precision": "fp32"})
    kwargs.update(change)
    return evaluation_fingerprint("ViT-B-32", **kwargs)


def test_fingerprint_names_each_change_and_ignores_the_batch_size(tmp_path):
    (tmp_path / "zeroshot.pt").write_bytes(b"12345")
    base = _fp(tmp_path)
    assert "batch_size" not in json.dumps(base)
    assert fingerprint_changes(base, _fp(tmp_path)) == []
    assert fingerprint_changes(_fp(tmp_path, max_eval_samples=20), base) == [
        "--max-eval-samples 20, this run has none"]
    assert fingerprint_changes(base, _fp(tmp_path, settings={"precision": "bf16"})) == [
        "--precision fp32, this run has bf16"]
    # An open dict: a setting no code knows about yet is compared and named by its flag.
    assert fingerprint_changes(base, _fp(tmp_path, settings={"precision": "fp32",
                                                             "merge_method": "ties"})) == [
        "--merge-method none, this run has ties"]
    assert fingerprint_changes(base, _fp(tmp_path, datasets=["AVal", "CVal"])) == [
        "eval datasets AVal BVal, this run has AVal CVal"]
    (tmp_path / "zeroshot.pt").write_bytes(b"123456")  # a checkpoint replaced on disk
    (changed,) = fingerprint_changes(base, _fp(tmp_path))
    assert changed.startswith(f"the pretrained checkpoint {tmp_path / 'zeroshot.pt'} as 5 bytes")
    assert "this run finds 6 bytes" in changed


@pytest.mark.parametrize("size", [5, 3 << 20])  # read whole; sampled in 16 blocks
def test_a_checkpoint_replaced_by_one_of_the_same_size_and_mtime_is_a_change(tmp_path, size):
    # another fine-tuning run copied over the old one with its mtime kept (cp -p, rsync -a)
    path = tmp_path / "zeroshot.pt"
    rng = np.random.default_rng(0)
    path.write_bytes(rng.bytes(size))
    base = _fp(tmp_path)
    st = path.stat()
    path.write_bytes(rng.bytes(size))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    (changed,) = fingerprint_changes(base, _fp(tmp_path))
    assert changed.startswith(f"the pretrained checkpoint {path} as {size} bytes")
    # a fingerprint written before the content digest existed still resumes
    old = json.loads(json.dumps(base))
    del old["files"]["pretrained checkpoint"]["stamp"]["sample_sha256"]
    path.write_bytes(rng.bytes(size))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_changes(old, _fp(tmp_path)) == []


def test_a_head_the_first_run_built_is_no_change_but_a_replaced_one_is(tmp_path):
    (tmp_path / "zeroshot.pt").write_bytes(b"x")
    run = tmp_path / "run"
    check_fingerprint(run, _fp(tmp_path))  # no head yet: it will be built zero-shot
    assert json.loads((run / FINGERPRINT).read_text())["files"]["head of AVal"]["stamp"] is None
    (tmp_path / "head_AVal.pt").write_bytes(b"head")  # ... and cached by that run
    check_fingerprint(run, _fp(tmp_path))  # the resume accepts it and records it
    assert json.loads((run / FINGERPRINT).read_text())["files"]["head of AVal"]["stamp"]
    (tmp_path / "head_AVal.pt").write_bytes(b"another head")
    with pytest.raises(MAPError, match=r"was made with the head of AVal .* as 4 bytes"):
        check_fingerprint(run, _fp(tmp_path))
    # A run that rebuilt a head (cached for another model) records the file it used.
    record_fingerprint(run, _fp(tmp_path))
    check_fingerprint(run, _fp(tmp_path))


def test_a_folder_checkpoint_is_stamped_file_by_file(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"w" * 10)
    fp = evaluation_fingerprint("local-dir:" + str(folder), checkpoints={"ft": folder},
                                datasets=["A"], data_location="/d", max_eval_samples=None)
    assert set(fp["files"]["ft"]["stamp"]) == {"config.json", "model.safetensors"}
    assert set(fp["files"]["model folder"]["stamp"]) == {"config.json", "model.safetensors"}
    (folder / "model.safetensors").write_bytes(b"w" * 11)
    again = evaluation_fingerprint("local-dir:" + str(folder), checkpoints={"ft": folder},
                                   datasets=["A"], data_location="/d", max_eval_samples=None)
    assert len(fingerprint_changes(fp, again)) == 2


@pytest.mark.slow
def test_resume_with_other_max_eval_samples_is_refused_and_writes_nothing(
        run_cli, capsys, tmp_path, zoo_root, one_thread):
    assert run_cli(*_argv(zoo_root, tmp_path, "x", images=20)) == 0
    run_dir = tmp_path / "x"
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert run_cli(*_argv(zoo_root, tmp_path, "x", images=None)) == 2
    out, err = capsys.readouterr()
    assert err.strip() == (f"run_MAP.py: error: run dir {run_dir} was made with "
                           f"--max-eval-samples 20, this run has none; use another --exp-id "
                           f"or delete {run_dir} to start afresh")
    assert _snapshot(run_dir) == before
    assert run_cli(*_argv(zoo_root, tmp_path, "x", images=20)) == 0


# ------------------------------------------------------------------ lock
def test_a_second_lock_on_a_run_directory_is_refused_until_released(tmp_path):
    with RunLock(tmp_path / "run"):
        info = json.loads((tmp_path / "run" / LOCK).read_text())
        assert info == {"pid": os.getpid(), "host": socket.gethostname()}
        with pytest.raises(MAPError, match=rf"in use by process {os.getpid()} on "):
            RunLock(tmp_path / "run").acquire()
        (tmp_path / "run" / "points.json").write_text("{}")
    with RunLock(tmp_path / "run"):  # released: the next run takes it
        pass


def test_a_run_that_stored_nothing_leaves_no_folder_behind(tmp_path):
    with pytest.raises(MAPError):
        with RunLock(tmp_path / "results" / "run"):
            raise MAPError("bad checkpoint")
    assert list(tmp_path.iterdir()) == []


def test_taking_the_lock_removes_stale_temporaries(tmp_path):
    run = tmp_path / "run"
    (run / "round1").mkdir(parents=True)
    stale = [run / ".A_Bscaling_results.json.k2j3h4.tmp", run / "round1" / ".x.json.abc.tmp"]
    for p in stale:
        p.write_text("half a fi")
    (run / "keep.json").write_text("{}")
    with RunLock(run):
        assert not any(p.exists() for p in stale)
    assert (run / "keep.json").exists()


@pytest.mark.slow
def test_a_second_run_is_refused_while_another_process_holds_the_directory(
        run_cli, capsys, tmp_path, zoo_root):
    run_dir = tmp_path / "x"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_cli(*_argv(zoo_root, tmp_path, "x")) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"run_MAP.py: error: run dir {run_dir} is in use by process "
                       f"{holder.pid} on {socket.gethostname()}; wait for it to finish or "
                       f"use another --exp-id")
        assert {p.name for p in run_dir.iterdir()} == {LOCK}
    finally:
        holder.kill()  # SIGKILL: the lock it leaves behind is stale
        holder.wait()
    with RunLock(run_dir):  # ... and taken over
        assert json.loads((run_dir / LOCK).read_text())["pid"] == os.getpid()


# ------------------------------------------------------------------ kill -9, SIGTERM
@pytest.mark.slow
def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_front(
        reference, run_cli, tmp_path, zoo_root, one_thread, monkeypatch):
    from task_vectors.engine import MergeEngine

    run_dir = tmp_path / "killed"
    argv = _argv(zoo_root, tmp_path, "killed")
    proc, marker = _start_held(argv, run_dir, 4)
    _wait_until_held(proc, marker)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    stored = _journal_lines(run_dir)
    assert stored == 4  # killed while evaluating the fifth point
    assert not (run_dir / f"{NAMES}scaling_results.json").exists()  # only the journal
    stale = run_dir / f".{NAMES}scaling_results.json.x1y2z3.tmp"  # a kill during a write
    stale.write_text('{"0": {"ev')

    counter = CountingEvaluate(MergeEngine.evaluate)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert run_cli(*argv) == 0  # the killed process's lock is taken over
    assert counter.calls == N_POINTS - stored  # nothing stored is evaluated again
    assert not stale.exists()
    assert not (run_dir / f"{NAMES}scaling_results.jsonl").exists()
    points = json.loads((run_dir / f"{NAMES}scaling_results.json").read_text())
    assert list(points) == [str(i) for i in range(N_POINTS)]
    front = f"{NAMES}pareto_front.json"
    assert json.loads((run_dir / front).read_text()) == \
        json.loads((reference / front).read_text())


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_directory_resumes(
        reference, run_cli, tmp_path, zoo_root, one_thread, monkeypatch):
    from task_vectors.engine import MergeEngine

    run_dir = tmp_path / "term"
    argv = _argv(zoo_root, tmp_path, "term")
    proc, marker = _start_held(argv, run_dir, 3)
    _wait_until_held(proc, marker)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith("run_MAP.py: interrupted by SIGTERM; the merge being evaluated "
                              f"was dropped, every finished evaluation is stored in {run_dir}")
    assert message.endswith("--exp-id term)")
    # Stopped cleanly: the journal was folded into a complete original-format file.
    assert not (run_dir / f"{NAMES}scaling_results.jsonl").exists()
    stored = len(json.loads((run_dir / f"{NAMES}scaling_results.json").read_text()))
    assert stored == 3  # the fourth merge, interrupted, was dropped

    counter = CountingEvaluate(MergeEngine.evaluate)
    monkeypatch.setattr(MergeEngine, "evaluate", counter)
    assert run_cli(*argv) == 0
    assert counter.calls == N_POINTS - stored
    front = f"{NAMES}pareto_front.json"
    assert json.loads((run_dir / front).read_text()) == \
        json.loads((reference / front).read_text())


def test_ctrl_c_before_any_point_leaves_nothing_and_says_so(run_cli, capsys, tmp_path,
                                                            zoo_root, monkeypatch, one_thread):
    from task_vectors.engine import MergeEngine

    monkeypatch.setattr(MergeEngine, "evaluate", CountingEvaluate(MergeEngine.evaluate, 0))
    assert run_cli(*_argv(zoo_root, tmp_path / "r", "x")) == 130
    err = capsys.readouterr().err
    assert "interrupted; the merge being evaluated was dropped, no evaluation had finished, " \
           "nothing was stored" in err
    assert not (tmp_path / "r").exists()
