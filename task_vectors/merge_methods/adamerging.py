"""MAP along learned profiles: each task vector re-shaped by its layer-wise AdaMerging
coefficients (task_vectors.adamerging, learned without labels on the run's own tasks), then
MAP searches the coefficients c as usual.

    tau'_{i,l} = lambda_{i,l} / m_i * tau_{i,l},   m_i = sum_l n_l lambda_{i,l} / sum_l n_l

(n_l: the parameters of tensor l). The divisor m_i makes the profile's parameter-weighted
mean coefficient 1, so c_i = 1 is task vector i at its full scale, re-shaped by its profile,
and the AdaMerging model itself is c = (m_1, ..., m_T); run.json records m as ``divisor``.

The object travels as every merge method does: ``from_flags`` takes the --adamerging-*
flags (defined once, by AdaMergingMode) and --seed; ``record()`` (fingerprint, run.json)
holds them under their flags' dests, so a resume with other AdaMerging settings is refused.
``learn`` returns the same object with the learned coefficients in it (``lambdas``, ``spans``),
whose ``tau_transform`` is a picklable partial: a Ray worker's engine built from it gets the
driver's tau'. torch is imported only by ``learn`` and the transform.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from map_common.errors import MAPError
from task_vectors.adamerging_settings import AdaMergingSettings
from task_vectors.merge_methods.base import MergeMethod, TauTransform

STATE = "adamerging_profile.pt"


def scale_segments(tau, scales: Sequence[Sequence[float]], spans: Sequence[tuple[int, int]]):
    """tau[i, a_l:b_l] *= scales[i][l], in place ([T, P] tau; one multiply per segment)."""
    import torch

    if len(scales) != tau.shape[0] or not spans or spans[-1][1] != tau.shape[1] or \
            any(len(row) != len(spans) for row in scales):
        raise ValueError(f"a profile of {len(scales)} x {len(spans)} coefficients ending at "
                         f"{spans[-1][1] if spans else 0} does not fit tau {tuple(tau.shape)}")
    s = torch.as_tensor(scales, dtype=torch.float64).to(tau.device)
    for layer, (a, b) in enumerate(spans):
        tau[:, a:b].mul_(s[:, layer, None].to(tau.dtype))
    return tau


def divisors(lambdas: Sequence[Sequence[float]], spans: Sequence[tuple[int, int]]
             ) -> list[float]:
    """m_i: the parameter-count-weighted mean of task i's coefficients."""
    sizes = [b - a for a, b in spans]
    total = float(sum(sizes))
    return [sum(v * n for v, n in zip(row, sizes)) / total for row in lambdas]


@dataclass(frozen=True)
class AdaMergingProfile(MergeMethod):
    name = "adamerging"
    label = "AdaMerging"
    help = ("adamerging (each task vector re-shaped by its layer-wise AdaMerging profile, "
            "learned without labels on the run's tasks with the --adamerging-* flags and "
            "normalised to mean 1: c_i = 1 keeps the task vector's scale)")
    kind = "learned"
    files: ClassVar[dict[str, str]] = {
        STATE: "the learned AdaMerging profile (coefficients, Adam state, step, entropy "
               "curve): a resumed run reads it instead of learning again"}

    adamerging: AdaMergingSettings = AdaMergingSettings()
    # learned (None until ``learn``): lambda [T][L], the flat span of each tensor, names
    lambdas: tuple[tuple[float, ...], ...] | None = None
    spans: tuple[tuple[int, int], ...] | None = None
    layers: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    learning: tuple[tuple[str, float], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.adamerging.granularity != "layer":
            raise MAPError("--merge-method adamerging learns layer-wise profiles (a task-wise "
                           "one, normalised, is --merge-method ta): drop --adamerging "
                           f"{self.adamerging.granularity}")
        if (self.lambdas is None) != (self.spans is None):
            raise ValueError("lambdas and spans are learned together")
        if self.lambdas is not None:
            for task, m in zip(self.tasks or range(len(self.lambdas)), self.divisor()):
                if not m > 0:
                    raise MAPError(f"the AdaMerging profile of {task} has mean coefficient "
                                   f"{m:g}: it cannot be normalised; learn it with another "
                                   "--adamerging-clamp / --adamerging-prior")

    @classmethod
    def settings(cls) -> tuple:
        return ()  # its flags are AdaMergingMode's (one definition each)

    @classmethod
    def from_flags(cls, values: Mapping[str, Any]) -> "AdaMergingProfile":
        return cls(AdaMergingSettings.from_flags(values))

    def record(self) -> dict[str, Any]:
        return {"merge_method": self.name, **self.adamerging.flag_record()}

    @property
    def learned(self) -> bool:
        return self.lambdas is not None

    def divisor(self) -> list[float]:
        if self.lambdas is None:
            raise RuntimeError("the AdaMerging profile is not learned yet")
        return divisors(self.lambdas, self.spans)

    def tau_transform(self) -> TauTransform:
        if self.lambdas is None:  # a bug: the run learns before any engine is built with it
            raise RuntimeError("--merge-method adamerging: learn() the profile before "
                               "transforming tau")
        scales = tuple(tuple(v / m for v in row) for row, m in zip(self.lambdas,
                                                                     self.divisor()))
        return partial(scale_segments, scales=scales, spans=self.spans)

    def learn(self, engine, datasets: Sequence[str], folder: str | Path
              ) -> "AdaMergingProfile":
        """Learn the profile on ``engine`` (its task vectors as fine-tuned; one dataset per
        task: its head and unlabeled images), its state kept in ``folder`` (continued, or
        read when complete); returns this object with the coefficients in it."""
        from task_vectors import adamerging as am

        result = am.learn(engine, list(datasets), self.adamerging, vectors="ta",
                          checkpoint=Path(folder) / STATE, desc="AdaMerging profile")
        layout = am.Layout.of(engine)
        return replace(
            self, lambdas=tuple(tuple(row) for row in result.lambdas.tolist()),
            spans=tuple((int(a), int(b)) for a, b in layout.spans), layers=tuple(layout.keys),
            tasks=tuple(engine.task_names),
            learning=(("steps", float(len(result.curve))),
                      ("resumed_from_step", float(result.resumed_from)),
                      ("seconds_this_process", result.seconds),
                      ("entropy_first_step", float(result.curve[0].mean())),
                      ("entropy_last_step", float(result.curve[-1].mean()))))

    def describe(self) -> dict[str, Any]:
        """run.json's record: the settings and, once learned, the profile."""
        out = self.record()
        if self.lambdas is None:
            return out
        tasks = list(self.tasks) or [str(i) for i in range(len(self.lambdas))]
        layers = list(self.layers) or [str(i) for i in range(len(self.spans))]
        out["learned"] = {
            "rule": "tau'_{i,l} = lambda_{i,l} / divisor_i * tau_{i,l}; divisor_i = the "
                    "parameter-weighted mean of lambda_{i,.}, so c_i = 1 keeps the task "
                    "vector's scale and the AdaMerging model itself is c_i = divisor_i",
            "images": "learned on the evaluation sets' unlabeled images (labels unread): "
                      "the images the front is measured on",
            "divisor": dict(zip(tasks, self.divisor())),
            "coefficients": {t: dict(zip(layers, row)) for t, row in zip(tasks, self.lambdas)},
            "layers": [{"name": k, "params": b - a} for k, (a, b) in zip(layers, self.spans)],
            **{k: (int(v) if k in ("steps", "resumed_from_step") else v)
               for k, v in self.learning}}
        return out
