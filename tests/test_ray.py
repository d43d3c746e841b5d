"""RayEvaluator on a local Ray with two CPU workers, against LocalEvaluator on the demo zoo.

One evaluator is shared by the module (starting Ray and building two engines costs most of
the time); the tests run in file order and each leaves it usable for the next.
"""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

pytest.importorskip("ray")  # the optional extra; `make test` installs it

from helpers import FEW_IMAGES
from map_common.errors import MAPError
from task_vectors.checkpoints import finetuned_path, head_path
from task_vectors.evaluators import EngineSpec, Evaluator, LocalEvaluator
from task_vectors.ray_evaluator import JobFailedError, RayEvaluator, _Worker, describe_job

TASKS = ("LetterVal", "DigitVal")


def demo_spec(zoo, tasks=TASKS, **changes) -> EngineSpec:
    fields = dict(model_name=zoo.model_name, pretrained=str(zoo.path / "zeroshot.pt"),
                  finetuned=tuple((t, str(finetuned_path(zoo.path, t))) for t in tasks),
                  heads=tuple((t, str(head_path(zoo.path, t))) for t in tasks),
                  datasets=tuple(tasks), data_location=str(zoo.path))
    fields.update(changes)
    return EngineSpec(**fields)


def grid(n: int) -> list[np.ndarray]:
    return [np.array([a, 1.0 - a]) for a in np.linspace(0.0, 1.0, n)]


@pytest.fixture(scope="module")
def spec(demo_zoo) -> EngineSpec:
    return demo_spec(demo_zoo, max_eval_samples=FEW_IMAGES)


@pytest.fixture(scope="module")
def local(spec, one_thread) -> LocalEvaluator:
    return LocalEvaluator(spec.build())


@pytest.fixture(scope="module")
def ray_eval(spec):
    evaluator = RayEvaluator(spec, workers=2, max_retries=2)
    yield evaluator
    evaluator.close()
    import ray

    assert not ray.is_initialized()  # it started the local Ray, so it stops it


@pytest.mark.slow
def test_results_match_local_evaluator_exactly(ray_eval, local):
    assert isinstance(ray_eval, Evaluator)
    assert len({w["node"] for w in ray_eval.worker_info()}) == 1  # both engines built, here
    jobs = grid(16)
    got = list(ray_eval.evaluate(jobs, TASKS))
    assert sorted(i for i, _ in got) == list(range(len(jobs)))
    expected = dict(local.evaluate(jobs, TASKS))
    assert dict(got) == expected  # exact floats, whatever the completion order
    per_worker = ray_eval.stats()["per_worker"]
    assert len({w["pid"] for w in per_worker}) == 2
    assert sum(w["jobs"] for w in per_worker) == len(jobs)


@pytest.mark.slow
def test_killed_worker_loses_no_job(ray_eval, local):
    pids = ray_eval.worker_pids()
    assert len(pids) == 2 and os.getpid() not in pids
    before = ray_eval.stats()
    jobs = grid(24)
    got = []
    for index, evals in ray_eval.evaluate(jobs, TASKS):
        if not got:  # both workers hold a job now: kill one mid-run
            os.kill(pids[0], signal.SIGKILL)
        got.append((index, evals))
    assert sorted(i for i, _ in got) == list(range(len(jobs)))  # each exactly once
    assert dict(got) == dict(local.evaluate(jobs, TASKS))
    after = ray_eval.stats()
    assert after["worker_restarts"] == before["worker_restarts"] + 1
    assert after["retries"] >= before["retries"] + 1
    assert pids[0] not in ray_eval.worker_pids()  # replaced by a fresh worker


@pytest.mark.slow
def test_job_that_always_raises_is_named(ray_eval, local):
    jobs = [np.array([1.0, 0.0]), "not-a-coefficient", np.array([0.0, 1.0])]
    before = ray_eval.stats()["retries"]
    kept = []
    with pytest.raises(JobFailedError, match=r"job 1 \('not-a-coefficient'\) failed 3 times"):
        for index, evals in ray_eval.evaluate(jobs, TASKS):
            kept.append((index, evals))
    assert ray_eval.stats()["retries"] == before + 2  # max_retries=2
    expected = dict(local.evaluate([jobs[0], jobs[2]], TASKS))
    for index, evals in kept:  # what was yielded before the error is intact
        assert evals == expected[{0: 0, 2: 1}[index]]
    # The pool survives for the next call.
    assert dict(ray_eval.evaluate(grid(3), TASKS)) == dict(local.evaluate(grid(3), TASKS))


@pytest.mark.slow
def test_user_error_is_not_retried(ray_eval):
    before = ray_eval.stats()["retries"]
    with pytest.raises(MAPError, match=r"job 0 \(\[1\., 0\., 0\.\]\): expected 2 coefficients"):
        list(ray_eval.evaluate([np.array([1.0, 0.0, 0.0])], TASKS))
    assert ray_eval.stats()["retries"] == before


def test_worker_keeps_its_build_error(demo_zoo, one_thread, tmp_path):
    # The actor body, without Ray: a build failure surfaces as the original MAPError.
    bad = demo_spec(demo_zoo, heads=(("LetterVal", str(tmp_path / "missing.pt")),
                                     ("DigitVal", str(tmp_path / "missing.pt"))))
    worker = _Worker(bad, "cpu", 1)
    with pytest.raises(MAPError):
        worker.info()


def test_describe_job():
    assert describe_job(3, [0.5, 0.25]) == "job 3 ([0.5 , 0.25])"
    assert describe_job(0, "x") == "job 0 ('x')"
    assert len(describe_job(0, np.zeros(500))) < 220
