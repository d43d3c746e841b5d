"""Real checkpoints and data: task_vectors pickles, Hugging Face CLIP folders, the real
ViT-B-32 size end to end through run_MAP.py, open_clip model names, and bad input."""
from __future__ import annotations

import copy
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

from helpers import PLAIN_MAP
from fixtures_real import (legacy_task_vectors_names, make_eurosat_tree, make_mnist_tree,
                           make_svhn_tree, write_open_clip_folder)
from map_common.errors import MAPError
from task_vectors.checkpoints import (check_compatible, finetuned_path, head_path,
                                      load_encoder, quickgelu_variant, save_module)
from task_vectors.datasets.registry import get_dataset
from task_vectors.engine import MergeEngine
from task_vectors.modeling import ClassificationHead, ImageEncoder

REPO = Path(__file__).resolve().parents[1]
PREFERENCE = str(REPO / "example_preference.yaml")

# A tiny CLIP ViT, the same in both libraries: open_clip config and HF CLIPVisionConfig.
TINY_CFG = {
    "embed_dim": 16, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2,
                   "head_width": 16, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}
HF_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
               patch_size=8, intermediate_size=128, hidden_act="quick_gelu")
PREPROCESS = {"size": 32, "mean": list(open_clip.OPENAI_DATASET_MEAN),
              "std": list(open_clip.OPENAI_DATASET_STD), "interpolation": "bicubic",
              "resize_mode": "shortest"}
# Task -> how its fine-tuned checkpoint is stored.
FORMATS = {"MNISTVal": "legacy pickle", "SVHNVal": "safetensors", "EuroSATVal": "HF folder"}
TASKS = list(FORMATS)


def make_data(root: Path) -> str:
    """Generated images in task_vectors' layouts: MNISTVal/SVHNVal test on 10% of train
    (4 and 2 images), EuroSATVal on the val folder (10 images)."""
    make_mnist_tree(str(root), n_per_class=4, seed=1)
    make_eurosat_tree(str(root), n_per_class=1, seed=2)
    make_svhn_tree(str(root), n_per_class=2, seed=3)
    return str(root)


def pickled_names(path: Path) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("run_MAP.py: error: ") and "\n" not in err, err
    return err


# ------------------------------------------------------------------ a task_vectors-style save
@dataclass
class TinySave:
    model_name: str
    save: Path
    data: str
    pretrained: torch.nn.Module                 # the legacy encoder pickled as zeroshot.pt
    legacy_finetuned: torch.nn.Module           # MNISTVal's legacy encoder
    heads: dict[str, torch.nn.Module]           # legacy heads, by dataset
    pre: dict[str, torch.Tensor]                # theta_pre in ImageEncoder keys
    finetuned: dict[str, dict[str, torch.Tensor]]  # MNISTVal, SVHNVal in ImageEncoder keys
    hf: CLIPVisionModel


def ours(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"model.{k}": v.detach().clone() for k, v in sd.items()}


def perturbed(sd: dict[str, torch.Tensor], seed: int, scale: float = 0.05
              ) -> dict[str, torch.Tensor]:
    """Visual weights and logit scale moved by noise: a stand-in for fine-tuning."""
    g = torch.Generator().manual_seed(seed)
    return {k: (v + scale * torch.randn(v.shape, generator=g)
                if k.startswith("visual.") or k == "logit_scale" else v.clone()).contiguous()
            for k, v in sd.items()}


@pytest.fixture(scope="module")
def tiny_save(tmp_path_factory) -> TinySave:
    """<save>/zeroshot.pt and MNISTVal/finetuned.pt as task_vectors pickles (src.modeling,
    open_clip 1.x names), SVHNVal/finetuned.safetensors, EuroSATVal/ a HF CLIPVisionModel
    folder, head_<Dataset>.pt as pickled task_vectors heads."""
    root = tmp_path_factory.mktemp("task_vectors_style")
    model_name = write_open_clip_folder(root / "arch", TINY_CFG, PREPROCESS)
    save = root / "save"
    torch.manual_seed(0)
    clip, train_pre, val_pre = open_clip.create_model_and_transforms(model_name)
    del clip.transformer  # what task_vectors' ImageEncoder drops
    clip.eval()
    tuned_clip = copy.deepcopy(clip)
    tuned_clip.load_state_dict(perturbed(clip.state_dict(), seed=1))
    g = torch.Generator().manual_seed(2)
    head_weights = {d: torch.randn(10, TINY_CFG["embed_dim"], generator=g) for d in TASKS}
    with legacy_task_vectors_names(root) as legacy:
        pretrained = legacy.ImageEncoder(clip, train_pre, val_pre)
        tuned = legacy.ImageEncoder(tuned_clip, train_pre, val_pre)
        heads = {d: legacy.ClassificationHead(True, w) for d, w in head_weights.items()}
        save.mkdir()
        torch.save(pretrained, save / "zeroshot.pt")
        (save / "MNISTVal").mkdir()
        torch.save(tuned, save / "MNISTVal" / "finetuned.pt")
        for d, head in heads.items():
            torch.save(head, head_path(save, d))
    svhn = perturbed(clip.state_dict(), seed=3)  # open_clip's own key names
    (save / "SVHNVal").mkdir()
    save_file(svhn, str(save / "SVHNVal" / "finetuned.safetensors"))
    torch.manual_seed(4)
    hf = CLIPVisionModel(CLIPVisionConfig(**HF_TINY)).eval()
    hf.save_pretrained(save / "EuroSATVal")
    return TinySave(model_name, save, make_data(root / "data"), pretrained, tuned, heads,
                    ours(clip.state_dict()),
                    {"MNISTVal": ours(tuned_clip.state_dict()), "SVHNVal": ours(svhn)}, hf)


@pytest.fixture(scope="module")
def tiny_engine(tiny_save) -> MergeEngine:
    s = tiny_save
    return MergeEngine.from_checkpoints(
        model_name=s.model_name, pretrained=str(s.save / "zeroshot.pt"),
        finetuned={t: str(finetuned_path(s.save, t)) for t in TASKS},
        heads={d: str(head_path(s.save, d)) for d in TASKS}, datasets=TASKS,
        data_location=s.data, batch_size=3)


def test_fixture_is_in_the_public_checkpoint_formats(tiny_save):
    save = tiny_save.save
    for path in (save / "zeroshot.pt", save / "MNISTVal" / "finetuned.pt"):
        names = pickled_names(path)
        assert b"src.modeling" in names and b"VisualTransformer" in names
        assert b"task_vectors" not in names
    assert b"src.modeling" in pickled_names(head_path(save, "MNISTVal"))
    assert finetuned_path(save, "SVHNVal").name == "finetuned.safetensors"
    assert finetuned_path(save, "EuroSATVal") == save / "EuroSATVal"
    assert sorted(p.name for p in (save / "EuroSATVal").iterdir()) == ["config.json",
                                                                        "model.safetensors"]


def test_hf_task_vector_reproduces_the_hf_model(tiny_engine, tiny_save):
    # theta(e_EuroSAT) is the HF vision tower with the pretrained projection on top.
    engine = tiny_engine
    engine.set_coefficients([float(t == "EuroSATVal") for t in TASKS])
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = tiny_save.hf(pixel_values=x).pooler_output @ \
            tiny_save.pre["model.visual.proj"]
        torch.testing.assert_close(engine.encoder(x), expected, rtol=0, atol=1e-4)
    tau = engine.task_vector(TASKS.index("EuroSATVal"))
    assert not tau["model.visual.proj"].any() and not tau["model.logit_scale"].any()
    assert tau["model.visual.conv1.weight"].abs().max() > 0.1


@pytest.mark.parametrize("c", [(0.3, -0.2, 0.7), (1.0, 0.5, 0.0), (0.0, 0.0, 0.0)])
def test_theta_equals_hand_merge_of_pickle_safetensors_and_hf(tiny_engine, tiny_save, c):
    engine, s = tiny_engine, tiny_save
    visual_params = {f"model.{k}" for k, _ in s.pretrained.model.named_parameters()
                     if k.startswith("visual.") or k == "logit_scale"}
    assert set(engine.keys) == visual_params
    engine.set_coefficients([float(t == "EuroSATVal") for t in TASKS])
    live = dict(engine.encoder.named_parameters())
    hf_theta = {k: live[k].detach().clone() for k in engine.keys}
    engine.set_coefficients(c)
    thetas = {**s.finetuned, "EuroSATVal": hf_theta}
    for k in engine.keys:
        expected = s.pre[k] + sum(ci * (thetas[t][k] - s.pre[k]) for ci, t in zip(c, TASKS))
        torch.testing.assert_close(live[k].detach(), expected, rtol=0, atol=1e-5)


@torch.no_grad()
def hand_evaluate(encoder, head, dataset: str, data: str, limit: int | None = None
                  ) -> dict[str, float]:
    """Per image, with the legacy module's own preprocessing and forward."""
    split = get_dataset(dataset, data).split("test")
    n = len(split) if limit is None else min(limit, len(split))
    x = torch.stack([encoder.val_preprocess(split[i][0]) for i in range(n)])
    y = torch.tensor([split[i][1] for i in range(n)])
    logits = head(encoder(x))
    return {"accuracy": int((logits.argmax(1) == y).sum()) / n,
            "loss": float(F.cross_entropy(logits, y))}


@pytest.mark.parametrize("which", ["pretrained", "MNISTVal"])
def test_evaluate_equals_the_legacy_modules(tiny_engine, tiny_save, which):
    s = tiny_save
    c = [float(t == which) for t in TASKS]
    encoder = s.legacy_finetuned if which == "MNISTVal" else s.pretrained
    got = tiny_engine.evaluate_at(c)
    assert set(got) == set(TASKS)
    for d in TASKS:
        expected = hand_evaluate(encoder, s.heads[d], d, s.data)
        assert got[d]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-9), d
        assert got[d]["loss"] == pytest.approx(expected["loss"], rel=1e-5), d


def test_hf_clip_model_folder_as_pretrained(tmp_path, tiny_save):
    # The all-HF route: --pretrained-checkpoint is a CLIPModel folder (as
    # openai/clip-vit-base-patch32), the fine-tuned models CLIPVisionModel folders.
    torch.manual_seed(6)
    config = CLIPConfig(text_config=dict(hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=64),
                        vision_config=HF_TINY, projection_dim=TINY_CFG["embed_dim"])
    clip = CLIPModel(config).eval()
    clip.save_pretrained(tmp_path / "pretrained")
    engine = MergeEngine.from_checkpoints(
        model_name=tiny_save.model_name, pretrained=str(tmp_path / "pretrained"),
        finetuned={"EuroSATVal": str(finetuned_path(tiny_save.save, "EuroSATVal"))},
        heads={"EuroSATVal": str(head_path(tiny_save.save, "EuroSATVal"))},
        datasets=["EuroSATVal"], data_location=tiny_save.data)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        pre = clip.vision_model(pixel_values=x).pooler_output
        tuned = tiny_save.hf(pixel_values=x).pooler_output
        for c, pooled in ((0.0, pre), (1.0, tuned), (0.4, None)):
            engine.set_coefficients([c])
            if pooled is not None:  # both towers under CLIP's visual projection
                torch.testing.assert_close(engine.encoder(x), clip.visual_projection(pooled),
                                           rtol=0, atol=1e-4)
        assert 0.0 <= engine.evaluate()["EuroSATVal"]["accuracy"] <= 1.0


def test_cli_map_mode_on_pickle_and_hf_checkpoints(tiny_save, tiny_engine, run_cli, tmp_path):
    s = tiny_save
    pair = ["MNISTVal", "EuroSATVal"]
    code = run_cli("--model", s.model_name, "--save", s.save, "--data-location", s.data,
                   "--method", "map", "--zeroshot-merge-models", *pair, "--point", 6,
                   *PLAIN_MAP, "--n-gen", 10, "--reevaluate", 1, "--batch-size", 16, "--device", "cpu",
                   "--preference", PREFERENCE, "--results-path", tmp_path, "--exp-id", "tiny")
    assert code == 0
    stored = json.loads((tmp_path / "tiny" / "MNISTVal_EuroSATValscaling_results.json")
                        .read_text())
    assert len(stored) == 6
    for entry in stored.values():  # the same numbers as the engine with SVHNVal at 0
        c = entry["models"]
        got = tiny_engine.evaluate_at([c.get(t, 0.0) for t in TASKS], pair)
        for d in pair:
            assert entry["evals"][d]["accuracy"] == pytest.approx(got[d]["accuracy"], abs=1e-9)
            assert entry["evals"][d]["loss"] == pytest.approx(got[d]["loss"], rel=1e-4)


# ------------------------------------------------------------------ real ViT-B-32 end to end
PAIR = ["MNISTVal", "EuroSATVal"]
MAX_EVAL = 3


@dataclass
class VitZoo:
    save: Path
    data: str
    pretrained: ImageEncoder
    finetuned: dict[str, dict[str, torch.Tensor]]
    heads: dict[str, ClassificationHead]


@pytest.fixture(scope="module")
def vit_zoo(tmp_path_factory) -> VitZoo:
    """Random-weight ViT-B-32 in the task_vectors layout: zeroshot.pt, two fine-tuned copies
    moved by small noise, random 512-d heads; MNIST and EuroSAT trees."""
    root = tmp_path_factory.mktemp("vit_b32")
    save = root / "save"
    torch.manual_seed(0)
    encoder = ImageEncoder("ViT-B-32").eval()
    save_module(encoder, save / "zeroshot.pt")
    finetuned, heads = {}, {}
    for i, d in enumerate(PAIR):
        g = torch.Generator().manual_seed(10 + i)
        sd = {k: v + 0.01 * torch.randn(v.shape, generator=g) if v.requires_grad else v
              for k, v in encoder.state_dict(keep_vars=True).items()}
        finetuned[d] = {k: v.detach() for k, v in sd.items()}
        tuned = copy.deepcopy(encoder)
        tuned.load_state_dict(finetuned[d])
        save_module(tuned, save / d / "finetuned.pt")
        del tuned
        heads[d] = ClassificationHead(normalize=True, weights=torch.randn(10, 512, generator=g))
        save_module(heads[d], head_path(save, d))
    data = root / "data"
    make_mnist_tree(str(data), n_per_class=4, seed=5)
    make_eurosat_tree(str(data), n_per_class=2, seed=6)
    return VitZoo(save, str(data), encoder, finetuned, heads)


@pytest.mark.slow
def test_run_map_end_to_end_on_real_vit_b32_size(vit_zoo, run_cli, tmp_path, capsys):
    start = time.perf_counter()
    code = run_cli("--model", "ViT-B-32", "--save", vit_zoo.save,
                   "--data-location", vit_zoo.data, "--method", "map",
                   "--zeroshot-merge-models", *PAIR, "--zeroshot-eval-datasets", *PAIR,
                   "--point", 6, *PLAIN_MAP, "--reevaluate", 1, "--n-gen", 30,
                   "--max-eval-samples", MAX_EVAL, "--batch-size", 16, "--device", "cpu",
                   "--preference", PREFERENCE, "--report-test", "--results-path", tmp_path,
                   "--exp-id", "e2e")
    elapsed = time.perf_counter() - start
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "e2e"
    names = "_".join(PAIR)
    expected = {f"{names}scaling_results.json", f"{names}_params.json",
                f"{names}pareto_front.json", f"{names}pareto_front_real.json",
                "pareto_front.png", "surrogate_fit.png", "surrogate_contours.png", "run.json"}
    assert expected <= {p.name for p in run.iterdir()}
    info = json.loads((run / "run.json").read_text())
    assert expected - {"run.json"} <= set(info["outputs"])  # run.json says what each is
    assert all((run / f).stat().st_size > 0 for f in expected | set(info["outputs"]))
    assert info["arguments"]["model"] == "ViT-B-32" and info["models"] == PAIR

    stored = json.loads((run / f"{names}scaling_results.json").read_text())
    assert len(stored) == 6
    front = json.loads((run / f"{names}pareto_front.json").read_text())
    assert front and all(len(v) == 2 for v in front.values())
    params = json.loads((run / f"{names}_surrogates.json").read_text())
    assert set(params) == set(PAIR)

    # One stored point recomputed by hand: theta_pre + sum c_i tau_i in a fresh copy.
    entry = max(stored.values(), key=lambda e: sum(e["models"].values()))
    c = [entry["models"][d] for d in PAIR]
    pre = vit_zoo.pretrained.state_dict()
    merged = {k: pre[k] + sum(ci * (vit_zoo.finetuned[d][k] - pre[k]) for ci, d in zip(c, PAIR))
              if v.is_floating_point() else v for k, v in pre.items()}
    model = copy.deepcopy(vit_zoo.pretrained)
    model.load_state_dict(merged)
    for d in PAIR:
        expected_eval = hand_evaluate(model, vit_zoo.heads[d], d, vit_zoo.data, MAX_EVAL)
        assert entry["evals"][d]["accuracy"] == pytest.approx(expected_eval["accuracy"],
                                                              abs=1e-9)
        assert entry["evals"][d]["loss"] == pytest.approx(expected_eval["loss"], rel=1e-4)
    # --report-test: the real test splits (MNIST, EuroSAT) with the Val sets' heads; the
    # pretrained model's row recomputed by hand
    test = info["summary"]["test"]
    assert test["datasets"] == {"MNISTVal": "MNIST", "EuroSATVal": "EuroSAT"}
    for d, t in test["datasets"].items():
        first = [np.asarray(get_dataset(name, vit_zoo.data).split("test")[0][0])
                 for name in (d, t)]
        assert not np.array_equal(*first)  # the test split is other images than the Val set
        by_hand = hand_evaluate(vit_zoo.pretrained, vit_zoo.heads[d], t, vit_zoo.data, MAX_EVAL)
        assert test["models"]["pretrained"]["accuracy"][t] == pytest.approx(
            by_hand["accuracy"], abs=1e-9)
    # the model handed over, written in the task_vectors format at ViT-B/32 size
    assert (run / "final_model" / "finetuned.pt").stat().st_size > 300e6
    print(f"run_MAP.py on ViT-B-32: {elapsed:.1f} s; {info['timings']}")


# ------------------------------------------------------------------ model names
def meta_clip_builder(monkeypatch) -> None:
    """Build open_clip models on the meta device: architecture only, no memory, no time."""
    real = open_clip.create_model_and_transforms

    def on_meta(*args, **kwargs):
        with torch.device("meta"):
            return real(*args, **{**kwargs, "device": "meta"})

    monkeypatch.setattr(open_clip, "create_model_and_transforms", on_meta)


# (name, patch size, width, layers, embed dim)
ARCHITECTURES = [("ViT-B-32", 32, 768, 12, 512), ("ViT-B-16", 16, 768, 12, 512),
                 ("ViT-L-14", 14, 1024, 24, 768)]


@pytest.mark.parametrize("name,patch,width,layers,embed", ARCHITECTURES)
def test_model_names_resolve_to_open_clip_architectures(monkeypatch, name, patch, width,
                                                        layers, embed):
    assert name in open_clip.list_models() and f"{name}-quickgelu" in open_clip.list_models()
    assert "openai" in open_clip.list_pretrained_tags_by_model(f"{name}-quickgelu")
    meta_clip_builder(monkeypatch)
    encoder = ImageEncoder(name)  # what --model NAME builds
    visual = encoder.model.visual
    assert visual.conv1.weight.shape == (width, 3, patch, patch)
    assert len(visual.transformer.resblocks) == layers
    assert visual.proj.shape == (width, embed)
    assert not hasattr(encoder.model, "token_embedding")  # text tower dropped
    assert encoder.val_preprocess.transforms[1].size == (224, 224)


def test_checkpoint_of_another_architecture_is_named(monkeypatch):
    meta_clip_builder(monkeypatch)
    b32 = ImageEncoder("ViT-B-32").state_dict()
    b16 = ImageEncoder("ViT-B-16").state_dict()
    with pytest.raises(MAPError, match=r"b16\.pt: weight 'model\.visual\.conv1\.weight' has "
                                       r"shape \(768, 3, 16, 16\)"):
        check_compatible(b32, b16, "b16.pt")


def test_quickgelu_variant_for_real_checkpoints(monkeypatch, tmp_path):
    meta_clip_builder(monkeypatch)
    openai_style = ImageEncoder("ViT-B-32-quickgelu")
    plain = ImageEncoder("ViT-B-32")
    assert quickgelu_variant("ViT-B-32", obj=openai_style) == "ViT-B-32-quickgelu"
    assert quickgelu_variant("ViT-B-16", obj=openai_style) == "ViT-B-16-quickgelu"
    assert quickgelu_variant("ViT-B-32", obj=plain) == "ViT-B-32"
    # A HF checkpoint says it in config.json (CLIPVisionConfig's default is quick_gelu).
    for act, expected in (("quick_gelu", "ViT-L-14-quickgelu"), ("gelu", "ViT-L-14")):
        folder = tmp_path / act
        CLIPVisionConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                         patch_size=14, intermediate_size=4096, projection_dim=768,
                         hidden_act=act).save_pretrained(folder)
        assert quickgelu_variant("ViT-L-14", hf_folder=folder) == expected


@pytest.fixture
def tiny_architecture(monkeypatch):
    """TINY_CFG registered as an open_clip architecture 'TinyViT' (+ '-quickgelu'), the way
    ViT-B-32 and ViT-B-32-quickgelu are."""
    from open_clip import factory

    gelu = {**TINY_CFG, "quick_gelu": False}
    monkeypatch.setitem(factory._MODEL_CONFIGS, "TinyViT", gelu)
    monkeypatch.setitem(factory._MODEL_CONFIGS, "TinyViT-quickgelu", TINY_CFG)
    return "TinyViT"


def test_legacy_quickgelu_pickle_loads_into_the_quickgelu_architecture(tiny_save,
                                                                      tiny_architecture):
    # The pickle holds OpenAI-style QuickGELU blocks; asking for the plain name must still
    # give its features, which GELU would change.
    encoder = load_encoder(tiny_save.save / "zeroshot.pt", tiny_architecture)
    assert encoder.model_name == "TinyViT-quickgelu"
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = tiny_save.pretrained(x)
        torch.testing.assert_close(encoder(x), expected, rtol=0, atol=1e-5)
        gelu = ImageEncoder(tiny_architecture)
        gelu.load_state_dict(encoder.state_dict())
        assert (gelu(x) - expected).abs().max() > 1e-3


# ------------------------------------------------------------------ bad input
def cli_args(model: str, save, data, *extra) -> list:
    return ["--model", model, "--save", save, "--data-location", data, "--method", "map",
            "--zeroshot-merge-models", "MNISTVal", "EuroSATVal", "--point", 6, "--n-gen", 5,
            "--reevaluate", 0, "--device", "cpu", "--preference", PREFERENCE, *extra]


def test_missing_checkpoint_folder(tmp_path, tiny_save, run_cli, capsys):
    nothing = tmp_path / "nothing"
    code = run_cli(*cli_args(tiny_save.model_name, nothing, tiny_save.data,
                             "--results-path", tmp_path / "runs"))
    assert code == 2
    assert str(nothing / "zeroshot.pt") in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()


def test_missing_finetuned_checkpoint(tmp_path, tiny_save, run_cli, capsys):
    save = tmp_path / "save"
    save.mkdir()
    (save / "zeroshot.pt").symlink_to(tiny_save.save / "zeroshot.pt")
    code = run_cli(*cli_args(tiny_save.model_name, save, tiny_save.data,
                             "--results-path", tmp_path / "runs"))
    assert code == 2
    err = one_line_error(capsys)
    assert "'MNISTVal'" in err and str(save / "MNISTVal" / "finetuned.pt") in err


def test_checkpoint_of_another_architecture_exits_2_naming_it(tmp_path, tiny_save, run_cli,
                                                               capsys):
    save = tmp_path / "save"
    save.mkdir()
    for name in ("zeroshot.pt", "EuroSATVal", "head_MNISTVal.pt", "head_EuroSATVal.pt"):
        (save / name).symlink_to(tiny_save.save / name)
    # Three layers where the pretrained model has two.
    deeper = write_open_clip_folder(
        tmp_path / "deeper", {**TINY_CFG, "vision_cfg": {**TINY_CFG["vision_cfg"], "layers": 3}},
        PREPROCESS)
    (save / "MNISTVal").mkdir()
    save_module(ImageEncoder(deeper), save / "MNISTVal" / "finetuned.pt")
    code = run_cli(*cli_args(tiny_save.model_name, save, tiny_save.data,
                             "--results-path", tmp_path / "runs"))
    assert code == 2
    err = one_line_error(capsys)
    assert str(save / "MNISTVal" / "finetuned.pt") in err
    assert "keys do not match the pretrained model" in err and "resblocks.2" in err


def test_missing_dataset_folder_exits_2_naming_it(tmp_path, tiny_save, run_cli, capsys):
    data = tmp_path / "data"
    make_mnist_tree(str(data), n_per_class=2)  # EuroSAT_splits is missing
    code = run_cli(*cli_args(tiny_save.model_name, tiny_save.save, data,
                             "--results-path", tmp_path / "runs"))
    assert code == 2
    err = one_line_error(capsys)
    assert "EuroSAT" in err and str(data / "EuroSAT_splits") in err


def test_unknown_model_name_exits_2(tmp_path, tiny_save, run_cli, capsys):
    code = run_cli(*cli_args("ViT-Q-99", tiny_save.save, tiny_save.data,
                             "--results-path", tmp_path / "runs"))
    assert code == 2
    assert "cannot build open_clip model 'ViT-Q-99'" in one_line_error(capsys)


def test_activation_mismatch_with_hf_checkpoint_is_refused(tmp_path, demo_zoo):
    # The zoo's encoder uses GELU; an HF config asking for quick_gelu must not be mixed in.
    import json

    from task_vectors.checkpoints import check_activation
    from task_vectors.modeling import ImageEncoder

    encoder = ImageEncoder(demo_zoo.model_name)
    folder = tmp_path / "TaskVal"
    folder.mkdir()
    config = {"model_type": "clip_vision_model", "hidden_act": "quick_gelu"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MAPError, match="QuickGELU.*--model"):
        check_activation(encoder, [str(folder)])
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu"}))
    check_activation(encoder, [str(folder)])  # same activation: accepted
