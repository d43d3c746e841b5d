"""bench/zoo_probe.py: its flags, and the zoo folder it fine-tunes into (sharing the built
zoo's pretrained files)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from task_vectors import zoo
from task_vectors.checkpoints import head_path, load_head, zeroshot_path

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def probe(request):
    sys.path.insert(0, str(REPO / "bench"))
    request.addfinalizer(lambda: sys.path.remove(str(REPO / "bench")))
    import zoo_probe

    return zoo_probe


def test_flags_default_to_the_recipe_and_sgd_to_no_weight_decay(probe):
    recipe = zoo.RECIPE["finetune"]
    args = probe.parse_args([])
    assert probe.finetune_cfg(args) == {"optimizer": "adamw", **recipe}
    sgd = probe.parse_args(["--optimizer", "sgd", "--lr", "0.015"])
    assert (sgd.wd, sgd.lr, sgd.steps) == (0.0, 0.015, recipe["steps"])
    assert probe.parse_args(["--optimizer", "sgd", "--wd", "1e-4"]).wd == 1e-4


@pytest.mark.parametrize("argv", [["--optimizer", "lion"], ["--lr", "0"], ["--lr", "-1"],
                                  ["--steps", "0"], ["--wd", "-0.1"], ["--dare-seeds", "0"]])
def test_bad_flags_are_refused(probe, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        probe.parse_args(argv)
    assert stop.value.code == 2
    assert "error: argument" in capsys.readouterr().err


@pytest.mark.parametrize("flag, message", [("--out", "is a file"),
                                           ("--zoo", "holds no built demo zoo")])
def test_an_out_file_or_a_zoo_folder_without_a_zoo_is_refused(probe, tmp_path, capsys,
                                                               flag, message):
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as stop:
        probe.parse_args([flag, str(tmp_path / "f")])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_the_probe_folder_links_the_pretrained_files_and_owns_its_fine_tunings(probe,
                                                                               demo_zoo,
                                                                               tmp_path):
    out = tmp_path / "probe"
    (out / "clip").mkdir(parents=True)  # a rerun into the same folder replaces what is there
    probe.link_pretrained(demo_zoo.path, out)
    assert (out / "clip").is_symlink() and (out / "clip").resolve() == \
        (demo_zoo.path / "clip").resolve()
    assert zeroshot_path(out).resolve() == zeroshot_path(demo_zoo.path).resolve()
    for task in demo_zoo.tasks:
        assert head_path(out, task).is_symlink()
        assert not (out / task).exists()  # its fine-tuned models are the probe's to write
    load_head(head_path(out, demo_zoo.tasks[0]))
    probe.link_pretrained(demo_zoo.path, out)  # again: idempotent
    assert (out / "clip").is_symlink()


def test_a_model_size_flag_makes_a_recipe_that_differs_only_there(probe):
    assert probe.probe_recipe(probe.parse_args(["--pretrain-lr", "1e-3"]))["pretrain"] == \
        {**zoo.RECIPE["pretrain"], "lr": 1e-3}
    args = probe.parse_args(["--width", "192", "--layers", "6"])
    assert probe.pretrains(args) and not probe.pretrains(probe.parse_args([]))
    recipe = probe.probe_recipe(args)
    vision, base = recipe["model_cfg"]["vision_cfg"], zoo.RECIPE["model_cfg"]["vision_cfg"]
    assert (vision["width"], vision["layers"], vision["mlp_ratio"]) == \
        (192, 6, base["mlp_ratio"])
    assert base["width"] != 192  # RECIPE itself is untouched (a deep copy)
    assert recipe["finetune"] == probe.finetune_cfg(args)
    assert {k: v for k, v in recipe.items() if k not in ("model_cfg", "finetune")} == \
        {k: v for k, v in zoo.RECIPE.items() if k not in ("model_cfg", "finetune")}
    assert zoo.recipe_key(recipe) != zoo.recipe_key() == zoo.recipe_key(zoo.RECIPE)


@pytest.mark.parametrize("argv, message", [
    (["--width", "100"], "not a multiple of the head width"),
    (["--width", "0"], "error: argument --width"),
    (["--mlp-ratio", "0"], "error: argument --mlp-ratio"),
    (["--pretrain-lr", "-1"], "error: argument --pretrain-lr"),
    (["--layers", "6", "--zoo", "."], "builds its own CLIP"),
    (["--layers", "6", "--out", "."], "is not empty"),
])
def test_bad_model_size_flags_are_refused(probe, argv, message, capsys, demo_zoo,
                                          monkeypatch):
    # "--zoo ." must name a built zoo to reach the model-size check; "--out ." a full folder
    monkeypatch.chdir(demo_zoo.path)
    with pytest.raises(SystemExit) as stop:
        probe.parse_args(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err
