"""MergeEngine loading: the streamed tau matrix against an independent merge, bf16 tau,
the tau_transform hook, arbitrary flat theta, statistics, and the checks of bad files."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from map_common.errors import MAPError
from task_vectors.checkpoints import finetuned_path, head_path, zeroshot_path
from task_vectors.engine import MergeEngine
from task_vectors.modeling import ClassificationHead

pytestmark = pytest.mark.usefixtures("one_thread")  # the demo model is tiny

POINTS = [np.zeros(8), np.eye(8)[2], np.full(8, 0.3),
          np.array([-0.5, 1.7, 0.0, 2.5, -1.2, 0.4, 1.0, -0.1]),
          np.random.default_rng(1).uniform(-1.0, 2.0, 8)]


def _torch_load(path):
    # Plain torch.load of files the zoo built: independent of the engine's readers.
    return torch.load(path, map_location="cpu", weights_only=False)


def _build(zoo, tasks=None, **kwargs) -> MergeEngine:
    tasks = tasks or zoo.tasks
    return MergeEngine.from_checkpoints(
        model_name=zoo.model_name, pretrained=str(zeroshot_path(zoo.path)),
        finetuned={t: str(finetuned_path(zoo.path, t)) for t in tasks},
        heads={t: str(head_path(zoo.path, t)) for t in tasks},
        datasets=tasks, data_location="", batch_size=512, **kwargs)


@pytest.fixture(scope="module")
def engine(demo_zoo) -> MergeEngine:
    return _build(demo_zoo)


@pytest.fixture(scope="module")
def flats(demo_zoo, engine) -> tuple[torch.Tensor, torch.Tensor]:
    """(theta_pre [P], stacked tau [T, P]) computed the pre-streaming way from the files."""
    pre = _torch_load(zeroshot_path(demo_zoo.path)).state_dict()
    flat_pre = torch.cat([pre[k].reshape(-1).float() for k in engine.keys])
    rows = []
    for t in demo_zoo.tasks:
        ft = _torch_load(finetuned_path(demo_zoo.path, t)).state_dict()
        rows.append(torch.cat([ft[k].reshape(-1).float() for k in engine.keys]) - flat_pre)
    return flat_pre, torch.stack(rows)


def _live_flat(engine: MergeEngine) -> torch.Tensor:
    params = dict(engine.encoder.named_parameters())
    return torch.cat([params[k].detach().reshape(-1) for k in engine.keys])


# ---------------------------------------------------------------- the streamed tau matrix
def test_streamed_tau_equals_the_stacked_differences_exactly(engine, flats):
    flat_pre, tau = flats
    assert torch.equal(engine.theta_pre, flat_pre)
    assert engine.tau.shape == tau.shape and engine.tau.dtype == torch.float32
    assert torch.equal(engine.tau, tau)


@pytest.mark.parametrize("ci", range(len(POINTS)))
def test_merged_weights_are_bit_identical_to_the_independent_merge(engine, flats, ci):
    flat_pre, tau = flats
    c = torch.tensor(POINTS[ci], dtype=torch.float32)
    engine.set_coefficients(POINTS[ci])
    got = _live_flat(engine)
    # Bit for bit what the pre-streaming engine computed (one addmv over stacked rows) ...
    assert torch.equal(got, torch.addmv(flat_pre, tau.T, c))
    # ... and the same model as theta_pre + sum_i c_i tau_i summed in float64.
    hand = flat_pre.double() + (c.double()[:, None] * tau.double()).sum(0)
    torch.testing.assert_close(got.double(), hand, rtol=1e-6, atol=1e-6)


def test_theta_buffer_is_kept_between_points(engine):
    engine.set_coefficients(POINTS[3])
    buffer = engine._theta
    engine.set_coefficients(POINTS[4])
    assert engine._theta is buffer  # no fresh flat theta per point


def test_bf16_tau_is_close_and_half_the_size(demo_zoo, engine, flats):
    flat_pre, tau = flats
    half = _build(demo_zoo, tau_dtype="bf16")
    assert half.tau.dtype == torch.bfloat16 and half.tau.shape == tau.shape
    assert half.tau.element_size() * 2 == engine.tau.element_size()
    assert half.theta_pre.dtype == torch.float32 and torch.equal(half.theta_pre, flat_pre)
    # Each stored entry is the fp32 difference rounded to bf16 (8 significant bits).
    assert torch.equal(half.tau, tau.to(torch.bfloat16))
    half.set_coefficients(np.zeros(8))
    assert torch.equal(_live_flat(half), flat_pre)  # theta_pre itself stays exact fp32
    for c in POINTS[2:]:
        half.set_coefficients(c)
        exact = flat_pre.double() + (torch.tensor(c)[:, None] * tau.double()).sum(0)
        bound = (torch.tensor(np.abs(c))[:, None] * tau.double().abs()).sum(0) * 2.0 ** -8
        err = (_live_flat(half).double() - exact).abs()
        assert bool((err <= bound + 1e-6 * exact.abs() + 1e-7).all())
        assert err.max() > 0  # it is the bf16 matrix that was used
    res_half = half.evaluate_at(POINTS[2], ["LetterVal", "SymbolVal"])
    res = engine.evaluate_at(POINTS[2], ["LetterVal", "SymbolVal"])
    for d in res:
        assert abs(res_half[d]["accuracy"] - res[d]["accuracy"]) <= 0.02, d


def test_tau_transform_gets_the_whole_matrix_once_and_edits_it_in_place(demo_zoo, flats):
    flat_pre, tau = flats
    calls = []

    def drop_second_and_halve(matrix: torch.Tensor) -> None:
        calls.append((tuple(matrix.shape), matrix.device.type, bool(torch.equal(matrix, tau))))
        matrix[1].zero_()
        matrix.mul_(0.5)

    eng = _build(demo_zoo, tau_transform=drop_second_and_halve)
    assert calls == [(tuple(tau.shape), "cpu", True)]
    expected = tau * 0.5
    expected[1] = 0.0
    assert torch.equal(eng.tau, expected)
    eng.set_coefficients(np.eye(8)[1])
    assert torch.equal(_live_flat(eng), flat_pre)
    c = POINTS[3]
    eng.set_coefficients(c)
    assert torch.equal(_live_flat(eng),
                       torch.addmv(flat_pre, expected.T, torch.tensor(c, dtype=torch.float32)))


def test_evaluate_theta_of_an_arbitrary_flat(engine, flats):
    flat_pre, tau = flats
    by_coefficients = engine.evaluate_at(np.eye(8)[2], ["DigitVal", "ShapeVal"])
    by_theta = engine.evaluate_theta(flat_pre + tau[2], ["DigitVal", "ShapeVal"])
    assert by_theta == by_coefficients
    assert np.isnan(engine.coefficients).all()
    midway = 0.5 * (flat_pre + tau[0]) + 0.5 * (flat_pre + tau[4])
    engine.set_theta(midway)
    assert torch.equal(_live_flat(engine), midway)
    with pytest.raises(ValueError, match="shape"):
        engine.set_theta(midway[:-1])
    engine.set_coefficients(np.zeros(8))
    assert torch.equal(_live_flat(engine), flat_pre)


def test_unflatten_gives_the_encoder_shapes(engine):
    parts = engine.unflatten(engine.theta_pre)
    params = dict(engine.encoder.named_parameters())
    assert list(parts) == engine.keys
    for k, v in parts.items():
        assert v.shape == params[k].shape


# ---------------------------------------------------------------- statistics
def test_stats_after_evaluation(demo_zoo):
    eng = _build(demo_zoo, tasks=["LetterVal", "PositionVal"])
    assert eng.stats()["points"] == 0
    for c in ([0.2, 0.7], [1.0, 0.0], [0.5, 0.5]):
        eng.evaluate_at(c)
    eng.evaluate(["PositionVal"])
    stats = json.loads(json.dumps(eng.stats()))  # JSON-serialisable
    n = {d: len(eng.eval_sets[d].labels) for d in eng.eval_sets}
    assert stats["points"] == 4 and stats["merges"] == 3
    assert stats["images"] == 3 * (n["LetterVal"] + n["PositionVal"]) + n["PositionVal"]
    for key in ("merge_seconds_mean", "merge_seconds_median", "forward_seconds_mean",
                "forward_seconds_median", "images_per_second", "peak_rss_bytes"):
        assert stats[key] > 0, key
    assert stats["peak_rss_bytes"] > 50 * 2 ** 20  # bytes, not KiB: torch alone is larger
    assert set(stats["load_seconds"]) == {"checkpoints", "heads", "decoding"}
    assert all(v > 0 for v in stats["load_seconds"].values())
    assert stats["forward_seconds_mean"] * stats["points"] == pytest.approx(
        stats["images"] / stats["images_per_second"], rel=1e-6)


# ---------------------------------------------------------------- bad files
def _damage(kind: str, good: bytes, folder) -> str:
    name = {"empty": "finetuned.pt", "truncated": "finetuned.pt", "text": "finetuned.pt",
            "garbage": "finetuned.pt", "garbage_st": "finetuned.safetensors",
            "truncated_st": "finetuned.safetensors", "text_st": "finetuned.safetensors"}[kind]
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "truncated_st":
        from safetensors.torch import save_file

        save_file({"model.visual.proj": torch.ones(64, 64)}, str(path))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return str(path)
    content = {"empty": b"", "truncated": good[: len(good) // 2],
               "text": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n",
               "garbage": GARBAGE, "garbage_st": GARBAGE,
               "text_st": b"<html><body>Not Found</body></html>\n"}[kind]
    path.write_bytes(content)
    return str(path)


# Fixed random bytes (not a zip, pickle or safetensors header by chance).
GARBAGE = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
DAMAGES = ["empty", "truncated", "text", "garbage", "garbage_st", "truncated_st", "text_st"]
WHAT = {"empty": "empty", "truncated": "truncated", "text": "text file", "garbage": "not a",
        "garbage_st": "not a safetensors", "truncated_st": "truncated", "text_st": "text file"}


@pytest.mark.parametrize("kind", DAMAGES)
def test_damaged_finetuned_checkpoint(tmp_path, demo_zoo, kind):
    good = finetuned_path(demo_zoo.path, "DigitVal").read_bytes()
    bad = _damage(kind, good, tmp_path / "DigitVal")
    with pytest.raises(MAPError) as err:
        MergeEngine.from_checkpoints(
            model_name=demo_zoo.model_name, pretrained=str(zeroshot_path(demo_zoo.path)),
            finetuned={"LetterVal": str(finetuned_path(demo_zoo.path, "LetterVal")),
                       "DigitVal": bad}, heads={}, datasets=[], data_location="")
    message = str(err.value)
    assert message.startswith(f"{bad}: ") and WHAT[kind] in message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("kind", ["empty", "truncated", "text", "garbage"])
def test_damaged_pretrained_and_head(tmp_path, demo_zoo, kind):
    good = zeroshot_path(demo_zoo.path).read_bytes()
    bad = _damage(kind, good, tmp_path / "x")
    with pytest.raises(MAPError) as err:
        MergeEngine.from_checkpoints(model_name=demo_zoo.model_name, pretrained=bad,
                                     finetuned={}, heads={}, datasets=[], data_location="")
    assert str(err.value).startswith(f"{bad}: ") and WHAT[kind] in str(err.value)
    head_bytes = head_path(demo_zoo.path, "LetterVal").read_bytes()
    bad_head = _damage(kind, head_bytes, tmp_path / "h")
    with pytest.raises(MAPError) as err:
        MergeEngine.from_checkpoints(
            model_name=demo_zoo.model_name, pretrained=str(zeroshot_path(demo_zoo.path)),
            finetuned={}, heads={"LetterVal": bad_head}, datasets=["LetterVal"],
            data_location="")
    assert str(err.value).startswith(f"{bad_head}: ") and "\n" not in str(err.value)


def _save_copy(src, dst, edit) -> str:
    model = _torch_load(src)
    with torch.no_grad():
        edit(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, dst)
    return str(dst)


def test_non_finite_weights_name_file_and_tensor(tmp_path, demo_zoo):
    key = "model.visual.transformer.resblocks.0.mlp.c_fc.weight"

    def poison(value):
        return lambda m: dict(m.named_parameters())[key].view(-1)[7].fill_(value)

    bad_ft = _save_copy(finetuned_path(demo_zoo.path, "ShapeVal"),
                        tmp_path / "ShapeVal" / "finetuned.pt", poison(float("nan")))
    with pytest.raises(MAPError) as err:
        _build_paths(demo_zoo, finetuned={"LetterVal": str(finetuned_path(demo_zoo.path,
                                                                         "LetterVal")),
                                          "ShapeVal": bad_ft})
    assert str(err.value).startswith(f"{bad_ft}: ") and f"'{key}'" in str(err.value)
    assert "non-finite" in str(err.value)

    bad_pre = _save_copy(zeroshot_path(demo_zoo.path), tmp_path / "zeroshot.pt",
                         poison(float("inf")))
    with pytest.raises(MAPError) as err:
        _build_paths(demo_zoo, pretrained=bad_pre)
    assert str(err.value).startswith(f"{bad_pre}: ") and f"'{key}'" in str(err.value)


def _build_paths(zoo, *, pretrained=None, finetuned=None, heads=None, datasets=()):
    return MergeEngine.from_checkpoints(
        model_name=zoo.model_name, pretrained=pretrained or str(zeroshot_path(zoo.path)),
        finetuned=finetuned or {"LetterVal": str(finetuned_path(zoo.path, "LetterVal"))},
        heads=heads or {}, datasets=list(datasets), data_location="")


def test_head_that_does_not_fit_the_dataset_or_encoder(tmp_path, demo_zoo):
    good = _torch_load(head_path(demo_zoo.path, "SymbolVal"))
    wrong_classes = tmp_path / "head_SymbolVal.pt"
    # A PositionVal head (5 classes) saved as the SymbolVal head (10 classes).
    shutil.copy(head_path(demo_zoo.path, "PositionVal"), wrong_classes)
    with pytest.raises(MAPError) as err:
        _build_paths(demo_zoo, heads={"SymbolVal": str(wrong_classes)}, datasets=["SymbolVal"])
    assert str(err.value).startswith(f"{wrong_classes}: ")
    assert "5 classes" in str(err.value) and "10" in str(err.value)

    wide = tmp_path / "head_wide.pt"
    torch.save(ClassificationHead(True, torch.randn(3, good.in_features + 8)), wide)
    with pytest.raises(MAPError) as err:
        _build_paths(demo_zoo, heads={"SymbolVal": str(wide)}, datasets=["SymbolVal"])
    assert str(err.value).startswith(f"{wide}: ")
    assert f"{good.in_features + 8}-wide" in str(err.value)
    assert str(good.in_features) in str(err.value)


def test_direct_engine_checks_heads_against_the_labels(demo_zoo, engine):
    from task_vectors.eval_data import EvalTensors

    data = engine.eval_sets["LetterVal"]
    small = ClassificationHead(True, torch.randn(5, engine.embed_dim()))
    encoder = _torch_load(zeroshot_path(demo_zoo.path))
    with pytest.raises(MAPError, match="head of 'LetterVal': 5 classes.*up to 25"):
        MergeEngine(encoder, [], {"LetterVal": small},
                    {"LetterVal": EvalTensors(data.images, data.labels, data.mean, data.std)})
