"""The demo model zoo: deterministic, in the task_vectors layout, and useful for merging."""
from __future__ import annotations

import copy

import json
import os
import stat

import numpy as np
import pytest
import torch

from map_common.errors import MAPError
from src.core.pareto import non_dominated
from task_vectors import zoo
from task_vectors.checkpoints import (
    check_compatible,
    finetuned_path,
    head_path,
    load_encoder,
    load_head,
    load_state_dict,
    zeroshot_path,
)
from task_vectors.datasets.registry import get_dataset
from task_vectors.engine import MergeEngine

TASKS = ["LetterVal", "DigitVal", "ShapeVal", "ColorVal", "TextureVal", "PositionVal", "ArrowVal",
         "SymbolVal"]
N_EVAL = 400  # images per evaluation set in these tests (the sets hold 1,200)


pytestmark = pytest.mark.usefixtures("one_thread")  # the demo model is tiny


@pytest.fixture(scope="module")
def engine(demo_zoo) -> MergeEngine:
    return MergeEngine.from_checkpoints(
        model_name=demo_zoo.model_name, pretrained=str(zeroshot_path(demo_zoo.path)),
        finetuned={t: str(finetuned_path(demo_zoo.path, t)) for t in TASKS},
        heads={t: str(head_path(demo_zoo.path, t)) for t in TASKS},
        datasets=TASKS, data_location="", batch_size=512, max_eval_samples=N_EVAL)


# ------------------------------------------------------------------ determinism
@pytest.fixture
def short_recipe(monkeypatch):
    """The recipe with few steps and images: the same code path at a fraction of the cost
    (the full build takes minutes of one core)."""
    monkeypatch.setitem(zoo.RECIPE, "pretrain", {**zoo.RECIPE["pretrain"], "steps": 20,
                                                 "images_per_task": 48, "batch_size": 32})
    monkeypatch.setitem(zoo.RECIPE, "finetune", {**zoo.RECIPE["finetune"], "steps": 6,
                                                 "images": 96, "batch_size": 32})


@pytest.mark.slow
def test_a_second_build_is_identical(tmp_path, short_recipe, capfd):
    # one in two worker processes, one in this process: the same files either way
    first = zoo.build_zoo(tmp_path / "a", verbose=True, workers=2)
    out, err = capfd.readouterr()
    # what a first `make demo` shows while it waits: pretraining's bar, then each task as
    # its worker process finishes it
    assert "pretraining the zoo's CLIP" in err and "20/20" in err
    done = [line.strip() for line in out.splitlines() if line.startswith("  fine-tuned ")]
    assert sorted(done) == sorted(f"fine-tuned {t}" for t in TASKS)
    second = zoo.build_zoo(tmp_path / "b", verbose=False, workers=1)
    out, err = capfd.readouterr()
    assert "fine-tuned" not in out and "pretraining" not in err
    assert first["recipe_key"] == second["recipe_key"] == zoo.recipe_key()
    assert first["tasks"] == second["tasks"]
    assert sorted(first["tasks"]) == sorted(TASKS)
    # Stronger: every weight file is bit-identical.
    a, b = tmp_path / "a", tmp_path / "b"
    pairs = [(zeroshot_path(a), zeroshot_path(b)),
             (a / "clip" / "open_clip_model.safetensors", b / "clip" / "open_clip_model.safetensors")]
    pairs += [(finetuned_path(a, t), finetuned_path(b, t)) for t in TASKS]
    pairs += [(head_path(a, t), head_path(b, t)) for t in TASKS]
    for new, old in pairs:
        x, y = load_state_dict(new), load_state_dict(old)
        assert set(x) == set(y), new.name
        for k in x:
            assert torch.equal(x[k], y[k]), (str(new), k)
    # Fine-tuning moved each task's weights, and differently per task.
    letter, shape = (load_state_dict(finetuned_path(a, t)) for t in ("LetterVal", "ShapeVal"))
    assert not torch.equal(letter["model.visual.proj"], shape["model.visual.proj"])
    assert (a / "clip" / "open_clip_config.json").read_text() == \
        (b / "clip" / "open_clip_config.json").read_text()


def test_a_recipe_given_to_build_zoo_sets_the_model_and_names_the_zoo(tmp_path, short_recipe,
                                                                      capfd):
    """bench/zoo_probe.py's other model sizes: the recipe given, not RECIPE, shapes the
    image tower, is written to zoo.json and keys it; RECIPE itself is not read for them."""
    recipe = copy.deepcopy(zoo.RECIPE)
    recipe["model_cfg"]["vision_cfg"].update(width=64, layers=1)
    recipe["finetune"]["steps"] = 2
    summary = zoo.build_zoo(tmp_path, verbose=False, workers=1, recipe=recipe)
    assert summary["recipe"] == recipe and summary["recipe_key"] == zoo.recipe_key(recipe)
    assert summary["recipe_key"] != zoo.recipe_key()
    assert 0 < summary["pretrain_seconds"] < summary["build_seconds"]
    weights = load_state_dict(finetuned_path(tmp_path, TASKS[0]))
    assert weights["model.visual.conv1.weight"].shape[0] == 64
    assert not any(".transformer.resblocks.1." in k and "visual" in k for k in weights)
    bad = {**recipe, "tasks": recipe["tasks"][:2]}
    with pytest.raises(ValueError, match="tasks are RECIPE's"):
        zoo.build_zoo(tmp_path / "bad", verbose=False, workers=1, recipe=bad)



def test_cached_zoo_records_its_recipe_and_accuracies(demo_zoo):
    info = demo_zoo.info
    assert info["recipe_key"] == zoo.recipe_key()
    assert json.loads(json.dumps(zoo.RECIPE)) == info["recipe"]
    for task in TASKS:
        acc = info["tasks"][task]
        assert 0.0 <= acc["pretrained_accuracy"] < acc["finetuned_accuracy"] <= 1.0, task



# ------------------------------------------------------------------ layout
def test_layout_and_loaders(demo_zoo):
    root = demo_zoo.path
    assert root.name == f"demo-zoo-{zoo.recipe_key()}"
    assert demo_zoo.tasks == TASKS
    assert sorted(demo_zoo.info["tasks"]) == sorted(TASKS)
    expected = {"zeroshot.pt", "zoo.json", "clip",
                *TASKS, *(f"head_{t}.pt" for t in TASKS)}
    assert {p.name for p in root.iterdir()} == expected
    encoder = load_encoder(zeroshot_path(root), demo_zoo.model_name)
    reference = encoder.state_dict()
    x = torch.randn(4, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = encoder.eval()(x)
    for task in TASKS:
        assert finetuned_path(root, task) == root / task / "finetuned.pt"
        assert [p.name for p in (root / task).iterdir()] == ["finetuned.pt"]
        sd = load_state_dict(finetuned_path(root, task), reference=reference)
        check_compatible(reference, sd, finetuned_path(root, task))
        # Fine-tuning moved the weights.
        assert not torch.equal(sd["model.visual.proj"], reference["model.visual.proj"])
        head = load_head(head_path(root, task))
        assert head.out_features == len(get_dataset(task, "").classnames)
        assert head.in_features == feats.shape[1]
        assert torch.isfinite(head(feats)).all()


def test_finetuned_models_beat_pretrained_on_their_task(engine):
    pre = engine.evaluate_at(np.zeros(len(TASKS)))
    for i, task in enumerate(TASKS):
        ft = engine.evaluate_at(np.eye(len(TASKS))[i], [task])[task]
        assert ft["accuracy"] >= pre[task]["accuracy"] + 0.03, (task, pre[task], ft)
        assert ft["loss"] < pre[task]["loss"], task


def test_task_arithmetic_helps_all_eight_tasks_at_once(engine):
    """The regime of real CLIP task vectors: the 8-task sum at a small shared lambda beats
    the pretrained model by a clear share of the gap to the fine-tuned models."""
    T = len(TASKS)
    def mean(res):
        return np.mean([res[t]["accuracy"] for t in TASKS])

    pre = mean(engine.evaluate_at(np.zeros(T)))
    ft = np.mean([engine.evaluate_at(np.eye(T)[i], [t])[t]["accuracy"]
                  for i, t in enumerate(TASKS)])
    ta = mean(engine.evaluate_at(np.full(T, 0.3)))
    assert pre + 0.25 * (ft - pre) < ta < ft, (pre, ta, ft)


def test_a_pair_trades_off(engine):
    pair = ["LetterVal", "ShapeVal"]
    idx = [TASKS.index(t) for t in pair]
    grid = np.linspace(0.0, 1.0, 6)
    acc = []
    for a in grid:
        for b in grid:
            c = np.zeros(len(TASKS))
            c[idx] = a, b
            res = engine.evaluate_at(c, pair)
            acc.append([res[t]["accuracy"] for t in pair])
    mask = non_dominated(np.array(acc), ["max", "max"])
    assert mask.sum() >= 3, np.array(acc)[mask]


# ------------------------------------------------------------------ cache
def test_recipe_key_follows_the_recipe(demo_zoo, monkeypatch):
    key = zoo.recipe_key()
    assert key == demo_zoo.info["recipe_key"]
    seen = {key}
    for change in [("seed", 1), ("tasks", zoo.RECIPE["tasks"][:-1])]:
        monkeypatch.setitem(zoo.RECIPE, *change)
        seen.add(zoo.recipe_key())
        monkeypatch.undo()
    monkeypatch.setitem(zoo.RECIPE["finetune"], "lr", 1e-3)
    seen.add(zoo.recipe_key())
    monkeypatch.undo()
    assert len(seen) == 4
    assert zoo.recipe_key() == key


def test_ensure_zoo_reuses_the_cache(demo_zoo, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt a cached zoo")

    monkeypatch.setattr(zoo, "build_zoo", no_build)
    assert zoo.ensure_zoo(demo_zoo.path.parent, verbose=False).path == demo_zoo.path


def test_the_folder_of_a_built_zoo_is_taken_as_is(demo_zoo, monkeypatch):
    """--zoo-dir names the cache that holds the zoos; given a zoo's own folder, it is used
    (not a second zoo built inside it)."""
    def no_build(*args, **kwargs):
        raise AssertionError("built a zoo inside a zoo")

    monkeypatch.setattr(zoo, "build_zoo", no_build)
    assert zoo.ensure_zoo(demo_zoo.path, verbose=False).path == demo_zoo.path


def test_the_folder_of_another_recipes_zoo_is_refused_before_any_build(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "build_zoo", _fake_build(calls := []))
    old = tmp_path / "demo-zoo-0123456789"
    old.mkdir()
    (old / "zoo.json").write_text(json.dumps({"recipe_key": "0123456789"}))
    with pytest.raises(zoo.ZooFolderError, match=rf"another recipe \(0123456789; this version's "
                       rf"is {zoo.recipe_key()}\): give the folder that holds the zoos"):
        zoo.ensure_zoo(old, verbose=False)
    assert calls == [] and [p.name for p in old.iterdir()] == ["zoo.json"]


def test_the_cli_runs_on_a_zoo_folder_given_as_zoo_dir(demo_zoo, run_cli, tmp_path,
                                                      monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("built a zoo inside a zoo")

    monkeypatch.setattr(zoo, "build_zoo", no_build)
    assert run_cli("--demo", "--zoo-dir", demo_zoo.path, "--method", "grid",
                   "--grid-points-per-axis", "2", "--max-eval-samples", "16", "--n-gen", "5",
                   "--results-path", tmp_path, "--exp-id", "z") == 0
    run = json.loads((tmp_path / "z" / "run.json").read_text())
    assert run["arguments"]["zoo_dir"] == str(demo_zoo.path)


@pytest.mark.parametrize("env", [False, True])
def test_another_recipes_zoo_folder_is_one_line_and_writes_nothing(env, run_cli, tmp_path,
                                                                   capsys, monkeypatch):
    monkeypatch.setattr(zoo, "build_zoo", _fake_build(calls := []))
    old = tmp_path / "demo-zoo-0123456789"
    old.mkdir()
    (old / "zoo.json").write_text(json.dumps({"recipe_key": "0123456789"}))
    where = ["--zoo-dir", old]
    if env:
        monkeypatch.setenv("MAP_ZOO_DIR", str(old))
        where = []
    assert run_cli("--demo", *where, "--results-path", tmp_path / "runs") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and calls == []
    assert err.startswith(f"run_MAP.py: error: {'$MAP_ZOO_DIR' if env else '--zoo-dir'}: "
                          f"{old} is a built demo zoo of another recipe (0123456789")
    assert not (tmp_path / "runs").exists()
    assert [p.name for p in old.iterdir()] == ["zoo.json"]


def _fake_build(calls: list):
    def build(folder, verbose=True):
        calls.append(folder)
        (folder / "zoo.json").write_text(json.dumps({"recipe_key": zoo.recipe_key()}))
        return {}
    return build


def test_a_changed_recipe_builds_a_new_zoo_once(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(zoo, "build_zoo", _fake_build(calls))
    monkeypatch.setitem(zoo.RECIPE, "seed", 123)
    built = zoo.ensure_zoo(tmp_path, verbose=False)
    assert built.path == tmp_path / f"demo-zoo-{zoo.recipe_key()}"
    assert built.info == {"recipe_key": zoo.recipe_key()}
    assert zoo.ensure_zoo(tmp_path, verbose=False).path == built.path
    assert len(calls) == 1
    # Built in a staging folder that is moved into place: nothing half-built is left.
    assert [p.name for p in tmp_path.iterdir()] == [built.path.name]


def test_a_process_that_finds_a_build_under_way_waits_for_it(tmp_path, monkeypatch, capsys):
    import fcntl
    import threading
    import time

    calls: list = []
    monkeypatch.setattr(zoo, "build_zoo", _fake_build(calls))
    target = tmp_path / f"demo-zoo-{zoo.recipe_key()}"
    with open(tmp_path / f".demo-zoo-{zoo.recipe_key()}.lock", "a") as first:
        fcntl.flock(first, fcntl.LOCK_EX)  # another process is building
        got = {}
        second = threading.Thread(target=lambda: got.update(zoo=zoo.ensure_zoo(tmp_path)))
        second.start()
        time.sleep(0.5)
        assert second.is_alive() and not got  # it waits instead of building too
        target.mkdir()
        (target / "zoo.json").write_text(json.dumps({"recipe_key": zoo.recipe_key()}))
    second.join(timeout=10)
    assert got["zoo"].path == target and calls == []  # the first build's zoo, not rebuilt
    assert "Waiting for another process that builds the demo model zoo" in capsys.readouterr().out


def test_a_failed_build_leaves_no_zoo(tmp_path, monkeypatch):
    def broken(folder, verbose=True):
        (folder / "zeroshot.pt").write_text("half")
        raise MAPError("interrupted")

    monkeypatch.setattr(zoo, "build_zoo", broken)
    with pytest.raises(MAPError, match="interrupted"):
        zoo.ensure_zoo(tmp_path, verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_zoo_folder_is_readable_per_umask(tmp_path, monkeypatch):
    # Files inside are saved 0666 & ~umask; the folder must not hide them (mkdtemp's 0700).
    monkeypatch.setattr(zoo, "build_zoo", _fake_build([]))
    built = zoo.ensure_zoo(tmp_path, verbose=False)
    reference = tmp_path / "reference"
    reference.mkdir()
    assert stat.S_IMODE(built.path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    assert os.access(built.path, os.R_OK | os.X_OK)


# ------------------------------------------------------------------ fine-tuning probes
def _tiny_task():
    from task_vectors.eval_data import EvalTensors

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 2, 2), generator=g, dtype=torch.uint8)
    labels = (images[:, 0, 0, 0] > 127).long()
    data = EvalTensors(images, labels, torch.full((3,), 0.5), torch.full((3,), 0.5))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    return model, data


def _finetuned(cfg: dict) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model, data = _tiny_task()
    before = [p.detach().clone() for p in model.parameters()]
    zoo._finetune(model, torch.nn.Identity(), data, cfg, torch.Generator().manual_seed(1))
    after = [p.detach() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # it trained
    return after


def test_finetuning_is_the_recipes_adamw_unless_a_probe_asks_for_sgd():
    cfg = {"lr": 0.05, "wd": 0.0, "steps": 6, "batch_size": 8}
    default = _finetuned(cfg)
    adamw = _finetuned({**cfg, "optimizer": "adamw"})
    sgd = _finetuned({**cfg, "optimizer": "sgd"})
    assert all(torch.equal(a, b) for a, b in zip(default, adamw))
    assert any(not torch.allclose(a, b) for a, b in zip(adamw, sgd))
    assert "optimizer" not in zoo.RECIPE["finetune"]  # the recipe (and its key) stays AdamW


def test_an_unknown_fine_tuning_optimizer_is_refused():
    model, data = _tiny_task()
    with pytest.raises(ValueError, match="'lion'"):
        zoo._finetune(model, torch.nn.Identity(), data, {"lr": 0.1, "wd": 0.0, "steps": 1,
                                                         "batch_size": 8,
                                                         "optimizer": "lion"},
                      torch.Generator())
