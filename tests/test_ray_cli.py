"""run_MAP.py on Ray (--workers / --ray-address / --sweep), on the demo zoo.

Fast tests: the flags' checks (one line, exit 2, nothing written), what build_config makes
of them, the job and evaluator adapters. Slow tests (a private local Ray of 2 CPU
workers): a map run with --workers 2 writes the same files as without; a worker killed
mid-run loses no point; a SIGKILLed driver resumes to the same front; nested runs a
level's pairs in one batch and builds the same tree; a sweep over 3 models runs 3 pairs.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import FEW_IMAGES, PLAIN_MAP, kill_processes_mentioning

from map_common.errors import MAPError

REPO = Path(__file__).resolve().parent.parent
NAMES = "LetterVal_DigitVal"
MAP_FLAGS = ["--demo", "--method", "map", "--n-gen", "20", "--reevaluate", "2",
             "--device", "cpu", "--max-eval-samples", str(FEW_IMAGES), *PLAIN_MAP]
# run_MAP.py whose driver, once `hold` points are stored, touches `marker` and waits there.
HELD_DRIVER = """
import sys, time
from pathlib import Path
from src.run.results import ScalingResults
hold, marker = int(sys.argv[1]), Path(sys.argv[2])
original = ScalingResults.add
def add(self, *args, **kwargs):
    original(self, *args, **kwargs)
    if len(self) >= hold:
        marker.touch()
        while True:
            time.sleep(1)  # until SIGKILL
ScalingResults.add = add
import run_MAP
sys.exit(run_MAP.main(sys.argv[3:]))
"""
SAME_FILES = [f"{NAMES}scaling_results.json", f"{NAMES}pareto_front.json",
              f"{NAMES}pareto_front_real.json", f"{NAMES}_surrogates.json",
              "final_model/merge.json"]


def _read(path: Path):
    return json.loads(Path(path).read_text())




# ------------------------------------------------------------------ flags (fast)
@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "--workers: must be a positive integer or 'auto', got 0"),
    (["--workers", "-1"], "--workers: must be a positive integer or 'auto', got -1"),
    (["--workers", "two"], "--workers: expected a positive integer or 'auto', got 'two'"),
    (["--ray-address", "somewhere"], "--ray-address: expected 'auto' or HOST:PORT"),
    (["--ray-address", "host:99999"], "--ray-address: expected 'auto' or HOST:PORT"),
    (["--cpus-per-worker", "0"], "--cpus-per-worker: must be a positive integer"),
    (["--sweep", "quads"], "--sweep: invalid choice"),
])
def test_bad_execution_flags_are_one_line_and_write_nothing(flags, message, tmp_path, run_cli,
                                                            capsys):
    assert run_cli("--demo", "--results-path", tmp_path / "runs", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags, message", [
    (["--method", "grid", "--sweep", "pairs"], "--sweep runs --method map"),
    (["--method", "bayesian", "--sweep", "pairs"], "--sweep runs --method map"),
    (["--method", "map", "--sweep", "pairs"], "--sweep pairs over 2 models is a single run"),
    (["--method", "map", "--sweep", "triples", "--zeroshot-merge-models", "LetterVal",
      "DigitVal", "ShapeVal"], "--sweep triples over 3 models is a single run"),
])
def test_impossible_sweeps_are_refused(flags, message, tmp_path, run_cli, capsys, zoo_root):
    assert run_cli("--demo", "--zoo-dir", zoo_root, "--results-path", tmp_path / "runs",
                   *flags) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def _config(zoo_root, *flags):
    from args import DEFAULTS, parse_arguments
    from src.run.config import build_config

    return build_config(parse_arguments(["--demo", "--zoo-dir", zoo_root, *flags]), DEFAULTS)


def test_build_config_resolves_the_pool(zoo_root, tmp_path):
    plain = _config(zoo_root).evaluation
    assert plain.workers is None and not plain.uses_ray
    two = _config(zoo_root, "--workers", "2", "--cpus-per-worker", "1").evaluation
    assert two.workers == 2 and two.uses_ray and two.shares_decoding
    one = _config(zoo_root, "--workers", "1").evaluation
    assert one.uses_ray and not one.shares_decoding  # one engine decodes for itself
    cached = _config(zoo_root, "--workers", "2", "--cache-dir", str(tmp_path)).evaluation
    assert not cached.shares_decoding
    joined = _config(zoo_root, "--ray-address", "127.0.0.1:6379").evaluation
    assert joined.workers == "auto" and joined.ray_address == "127.0.0.1:6379"
    # The pool never changes a value: a resume may switch between local and Ray.
    assert two.value_settings() == plain.value_settings()
    sweep = _config(zoo_root, "--method", "map", "--sweep", "pairs",
                    "--zeroshot-merge-models", "LetterVal", "DigitVal", "ShapeVal")
    assert sweep.sweep == "pairs" and sweep.points == 12  # the default for 2 tasks
    demo = _config(zoo_root, "--sweep", "pairs")  # --method nested (default) means map
    assert demo.method == "map" and demo.T == 4 and demo.points == 12


def test_job_failure_becomes_one_line_error():
    from src.run.evaluation import OneLineFailures
    from task_vectors.ray_evaluator import JobFailedError

    class Failing:
        def evaluate(self, jobs, datasets):
            yield 0, {"a": {"accuracy": 1.0}}
            raise JobFailedError("job 1 ([0.5, 0.5]) failed 4 times; last error: boom")

        def stats(self):
            return {"backend": "fake"}

    wrapped = OneLineFailures(Failing())
    got = []
    with pytest.raises(MAPError, match=r"job 1 \(\[0.5, 0.5\]\) failed 4 times.*rerun"):
        for item in wrapped.evaluate([[1, 0], [0.5, 0.5]], ["a"]):
            got.append(item)
    assert got == [(0, {"a": {"accuracy": 1.0}})]  # what finished was handed over
    assert wrapped.stats() == {"backend": "fake"}


def test_jobs_carry_their_datasets_and_subsets_are_zero_padded():
    from src.modes.sweep import SubsetView
    from task_vectors.evaluators import LocalEvaluator, SubsetJob, run_job

    class Engine:
        def __init__(self):
            self.calls = []

        def evaluate_at(self, c, datasets):
            self.calls.append((np.asarray(c).tolist(), list(datasets)))
            return {d: {"accuracy": float(sum(c))} for d in datasets}

    engine = Engine()
    run_job(engine, SubsetJob((0.25, 0.5, 0.0), ("B",)), ["A", "B", "C"])
    run_job(engine, np.array([1.0, 0.0, 0.0]), ["A"])
    assert engine.calls == [([0.25, 0.5, 0.0], ["B"]), ([1.0, 0.0, 0.0], ["A"])]

    engine.calls.clear()
    view = SubsetView(LocalEvaluator(engine), [0, 2], 3, ["A", "C"])
    out = dict(view.evaluate([np.array([0.3, 0.7])], ["A", "C"]))
    assert engine.calls == [([0.3, 0.0, 0.7], ["A", "C"])]
    assert out[0]["C"]["accuracy"] == pytest.approx(1.0)


# ------------------------------------------------------------------ on Ray (slow)
@pytest.fixture(scope="module")
def ray_tmp():
    """A short private folder for Ray's sockets; every Ray process started under it is
    ended at the end of the module (only those: they mention the folder)."""
    pytest.importorskip("ray")
    folder = tempfile.mkdtemp(prefix="mapcli", dir="/tmp")
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = folder
    yield folder
    if previous is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = previous
    kill_processes_mentioning(folder)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray_cli")


@pytest.fixture(scope="module")
def local_map(runs, zoo_root) -> Path:
    import run_MAP

    assert run_MAP.main([*MAP_FLAGS, "--zoo-dir", zoo_root, "--point", "10",
                         "--results-path", str(runs), "--exp-id", "local"]) == 0
    return runs / "local"


@pytest.mark.slow
def test_map_with_two_workers_writes_the_same_files(local_map, runs, zoo_root, ray_tmp,
                                                    one_thread, monkeypatch):
    import run_MAP

    assert run_MAP.main([*MAP_FLAGS, "--zoo-dir", zoo_root, "--point", "10",
                         "--results-path", str(runs), "--exp-id", "ray2",
                         "--workers", "2"]) == 0
    for name in SAME_FILES:
        assert (runs / "ray2" / name).read_bytes() == (local_map / name).read_bytes(), name
    evaluation = _read(runs / "ray2" / "run.json")["evaluation"]
    assert evaluation["backend"] == "ray" and evaluation["workers"] == 2
    # design + re-evaluated front points + the pretrained model (pick check)
    assert evaluation["jobs"] == 10 + 2 + 1
    cached = {p: p.stat().st_mtime_ns for p in (runs / "ray2" / ".eval_cache").glob("eval_*.pt")}
    assert len(cached) == 2
    # the same command again resumes: the decoded sets are read back, never decoded again
    import task_vectors.eval_data as eval_data

    def no_decoding(*args, **kwargs):
        raise AssertionError("an evaluation set was decoded again")

    monkeypatch.setattr(eval_data, "decode_dataset", no_decoding)
    assert run_MAP.main([*MAP_FLAGS, "--zoo-dir", zoo_root, "--point", "10",
                         "--results-path", str(runs), "--exp-id", "ray2",
                         "--workers", "2"]) == 0
    assert {p: p.stat().st_mtime_ns for p in cached} == cached
    for name in SAME_FILES:
        assert (runs / "ray2" / name).read_bytes() == (local_map / name).read_bytes(), name


@pytest.mark.slow
def test_a_learned_merge_method_reaches_the_workers(runs, zoo_root, ray_tmp, one_thread):
    """--merge-method adamerging: learned once, in the driver; the workers get the learned
    coefficients in the spec's method object and evaluate the same merges as locally."""
    import run_MAP

    flags = [*MAP_FLAGS, "--zoo-dir", zoo_root, "--point", "8", "--merge-method",
             "adamerging", "--adamerging-steps", "3", "--adamerging-lr", "0.05",
             "--max-eval-samples", "60", "--results-path", str(runs)]
    assert run_MAP.main([*flags, "--exp-id", "profile_local"]) == 0
    assert run_MAP.main([*flags, "--exp-id", "profile_ray", "--workers", "1"]) == 0
    for name in SAME_FILES:
        assert (runs / "profile_ray" / name).read_bytes() == \
            (runs / "profile_local" / name).read_bytes(), name
    learned = [_read(runs / r / "run.json")["merge_method"]["learned"]["coefficients"]
               for r in ("profile_local", "profile_ray")]
    assert learned[0] == learned[1]
    assert _read(runs / "profile_ray" / "run.json")["evaluation"]["backend"] == "ray"


@pytest.mark.slow
def test_killed_worker_still_stores_every_point_once(local_map, runs, zoo_root, ray_tmp,
                                                     one_thread, monkeypatch):
    """SIGKILL one worker process after the first result: its jobs are retried on the
    other or its replacement; the store ends with every design point, once, as locally."""
    import run_MAP
    import src.modes.common as common

    real_open = common.open_evaluator
    killed = []

    def open_and_kill(config, timings):
        evaluator = real_open(config, timings)
        inner_evaluate = evaluator.evaluate

        def evaluate(jobs, datasets):
            for k, item in enumerate(inner_evaluate(jobs, datasets)):
                if k == 1 and not killed:
                    pid = evaluator.worker_pids()[0]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                yield item

        evaluator.evaluate = evaluate
        return evaluator

    monkeypatch.setattr(common, "open_evaluator", open_and_kill)
    assert run_MAP.main([*MAP_FLAGS, "--zoo-dir", zoo_root, "--point", "10",
                         "--results-path", str(runs), "--exp-id", "killed",
                         "--workers", "2"]) == 0
    assert killed
    stored = _read(runs / "killed" / f"{NAMES}scaling_results.json")
    points = [tuple(e["models"].values()) for e in stored.values()]
    assert len(points) == 10 and len(set(points)) == 10  # every point, once
    for name in SAME_FILES:
        assert (runs / "killed" / name).read_bytes() == (local_map / name).read_bytes(), name
    evaluation = _read(runs / "killed" / "run.json")["evaluation"]
    assert evaluation["worker_restarts"] >= 1


@pytest.mark.slow
def test_sigkilled_driver_resumes_to_the_same_front(local_map, runs, zoo_root, ray_tmp):
    """SIGKILL run_MAP.py --workers 1 (and its Ray) once points are stored; the same
    command finishes the run with the front of an uninterrupted local run."""
    flags = [*MAP_FLAGS, "--zoo-dir", zoo_root, "--point", "10", "--results-path", str(runs)]
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(REPO / "run_MAP.py"), *flags, "--exp-id", "resumed",
               "--workers", "1"]
    log = runs / "resumed" / f"{NAMES}scaling_results.jsonl"
    marker = runs / "resumed.held"
    # the driver stops after storing its 5th point and waits there for the kill (the
    # event the test waits on: the kill always lands mid-run, whatever the load)
    held = [sys.executable, "-c", HELD_DRIVER, "5", str(marker), *command[2:]]
    driver = subprocess.Popen(held, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        hang_limit = time.monotonic() + 900  # only stops a hung driver blocking the suite
        while not marker.exists():
            assert driver.poll() is None, "the driver ended before its fifth point"
            assert time.monotonic() < hang_limit, "the driver hung before its fifth point"
            time.sleep(0.2)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and what it started
    finally:
        driver.wait(timeout=60)
    stored = len(log.read_text().splitlines())
    assert stored == 5
    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    results = _read(runs / "resumed" / f"{NAMES}scaling_results.json")
    assert len(results) == 10
    assert results == _read(local_map / f"{NAMES}scaling_results.json")
    for name in (f"{NAMES}pareto_front.json", f"{NAMES}pareto_front_real.json"):
        assert _read(runs / "resumed" / name) == _read(local_map / name), name


@pytest.mark.slow
def test_nested_runs_a_level_in_one_batch_and_builds_the_same_tree(runs, zoo_root, ray_tmp,
                                                                   one_thread, monkeypatch):
    import run_MAP
    import src.modes.common as common

    flags = ["--demo", "--zoo-dir", zoo_root, "--method", "nested", "--point", "8",
             "--n-gen", "20", "--max-eval-samples", str(FEW_IMAGES),
             "--results-path", str(runs)]
    real_open = common.open_evaluator
    batches: list[list[tuple[str, ...]]] = []

    def recording(config, timings):
        evaluator = real_open(config, timings)
        inner_evaluate = evaluator.evaluate

        def evaluate(jobs, datasets):
            batches.append([tuple(getattr(j, "datasets", datasets)) for j in jobs])
            return inner_evaluate(jobs, datasets)

        evaluator.evaluate = evaluate
        return evaluator

    monkeypatch.setattr(common, "open_evaluator", recording)
    assert run_MAP.main([*flags, "--exp-id", "nested_local"]) == 0
    local_batches = list(batches)
    batches.clear()
    assert run_MAP.main([*flags, "--exp-id", "nested_ray", "--workers", "2"]) == 0
    assert batches == local_batches  # the same jobs in the same calls
    # singles, TA's sweep (the pairs' context), level 0 (2 pairs: 16 design points in ONE
    # call), its 2 measurements, level 1, its measurement, then the pretrained model
    assert [len(b) for b in batches] == [4, 10, 16, 2, 8, 1, 1]
    assert len(set(batches[2])) == 2  # the call holds both pairs, each on its datasets

    def tree(name):
        return [{k: v for k, v in rec.items() if k != "info"}
                for rec in _read(runs / name / "merge_tree.json")["rounds"]]

    assert tree("nested_ray") == tree("nested_local")
    assert [r["level"] for r in tree("nested_ray")] == [0, 0, 1]
    for name in ("final_model/merge.json", "single_task_scaling_results.json"):
        assert _read(runs / "nested_ray" / name) == _read(runs / "nested_local" / name)
    for r, rec in enumerate(tree("nested_ray")):
        scaling = f"round{r + 1}/{rec['left']}_{rec['right']}scaling_results.json"
        assert _read(runs / "nested_ray" / scaling) == _read(runs / "nested_local" / scaling)
    ray_model = (runs / "nested_ray" / "final_model" / "finetuned.pt").stat().st_size
    assert ray_model == (runs / "nested_local" / "final_model" / "finetuned.pt").stat().st_size


@pytest.mark.slow
def test_sweep_over_three_models_runs_three_pairs(runs, zoo_root, ray_tmp, one_thread):
    import run_MAP

    models = ["LetterVal", "DigitVal", "ShapeVal"]
    flags = [*MAP_FLAGS, "--zoo-dir", zoo_root, "--point", "8", "--results-path", str(runs)]
    assert run_MAP.main([*flags, "--zeroshot-merge-models", *models, "--sweep", "pairs",
                         "--exp-id", "sweep", "--workers", "1"]) == 0
    sweep = runs / "sweep"
    pairs = ["LetterVal_DigitVal", "LetterVal_ShapeVal", "DigitVal_ShapeVal"]
    with open(sweep / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["subset"] for row in rows] == pairs
    assert (sweep / "sweep.png").stat().st_size > 0
    # every column against the subset's own files
    for row, pair in zip(rows, pairs):
        models = pair.split("_")
        folder = sweep / pair
        summary = _read(folder / "run.json")["summary"]
        assert row["models"] == " ".join(models)
        assert int(row["n_evaluations"]) == len(_read(folder / f"{pair}scaling_results.json"))
        front = _read(folder / f"{pair}pareto_front.json")
        assert int(row["front_size"]) == len(front)
        r2 = [s["r2"] for s in _read(folder / f"{pair}_surrogates.json").values()]
        assert float(row["min_surrogate_r2"]) == pytest.approx(min(r2), rel=1e-9)
        real = _read(folder / f"{pair}pareto_front_real.json").values()
        errors = [np.abs(np.array(front[str([e["models"][m] for m in models])]) -
                         [e["evals"][d]["accuracy"] for d in models]) for e in real]
        assert len(errors) == 2 and float(row["front_error"]) == pytest.approx(
            np.mean(errors), rel=1e-9)
        chosen, weights = summary["chosen"]["real"], summary["chosen"]["preference"]
        weighted = sum(chosen[d] * weights[d] for d in models) / sum(weights.values())
        assert float(row["chosen_real_weighted"]) == pytest.approx(weighted, rel=1e-9)
        assert row["chosen_real"] == " ".join(f"{d}={chosen[d]:.4f}" for d in models)
    for pair in pairs:
        run = _read(sweep / pair / "run.json")
        assert run["models"] == pair.split("_") and run["summary"]["n_evaluations"] == 8
        assert len(_read(sweep / pair / f"{pair}scaling_results.json")) == 8
    # per pair: design, re-evaluated front points, the pretrained model (pick check)
    assert _read(sweep / "run.json")["evaluation"]["jobs"] == 3 * 8 + 3 * 2 + 3
    # A subset's run is the plain map run of that pair (zero-padded merges, same values).
    assert run_MAP.main([*flags, "--zeroshot-merge-models", "LetterVal", "ShapeVal",
                         "--exp-id", "one_pair"]) == 0
    one = _read(runs / "one_pair" / "LetterVal_ShapeValscaling_results.json")
    swept = _read(sweep / "LetterVal_ShapeVal" / "LetterVal_ShapeValscaling_results.json")
    assert one.keys() == swept.keys()
    for key in one:
        for d in ("LetterVal", "ShapeVal"):
            assert swept[key]["evals"][d]["accuracy"] == pytest.approx(
                one[key]["evals"][d]["accuracy"], abs=1e-9)


def test_results_are_stored_in_job_order_and_none_is_lost_on_failure():
    from src.run.evaluation import store_in_order
    from task_vectors.ray_evaluator import JobFailedError

    stored = []
    store_in_order(iter([(1, "b"), (0, "a"), (3, "d"), (2, "c")]),
                   lambda i, r: stored.append((i, r)))
    assert stored == [(0, "a"), (1, "b"), (2, "c"), (3, "d")]

    def failing():
        yield 0, "a"
        yield 2, "c"  # finished while job 1 kept failing
        yield 3, "d"
        raise JobFailedError("job 1 failed 4 times")

    stored.clear()
    with pytest.raises(JobFailedError):
        store_in_order(failing(), lambda i, r: stored.append((i, r)))
    assert stored == [(0, "a"), (2, "c"), (3, "d")]  # everything finished is stored
