"""AdaMerging's settings, torch-free: the parser and the config build and check them (and
the --merge-method adamerging object that carries them) before torch is imported.
``task_vectors.adamerging`` re-exports them with the method itself."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from map_common.errors import MAPError

GRANULARITIES = ("task", "layer")




@dataclass(frozen=True)
class AdaMergingSettings:
    """The method's hyperparameters; the defaults are the original's (checkpoint_every is
    ours)."""

    granularity: str = "layer"   # task | layer
    prior: float = 0.3           # every coefficient's initial value
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    steps: int = 500
    batch_size: int = 16         # unlabeled images per task and step
    seed: int = 0                # the batch order
    low: float = 0.0             # coefficients clamped to [low, high] after each step
    high: float = 1.0
    checkpoint_every: int = 50   # steps between checkpoints

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise MAPError(f"AdaMerging granularity must be one of {', '.join(GRANULARITIES)}, "
                           f"got {self.granularity!r}")
        for name in ("prior", "lr", "beta1", "beta2", "low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value):
                raise MAPError(f"AdaMerging {name} must be a finite number, got {value!r}")
        if self.lr <= 0:
            raise MAPError(f"AdaMerging lr must be positive, got {self.lr}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise MAPError(f"AdaMerging {name} must be in [0, 1), got {getattr(self, name)}")
        if not self.low < self.high:
            raise MAPError(f"AdaMerging clamp range: low {self.low} must be below high "
                           f"{self.high}")
        if not self.low <= self.prior <= self.high:
            raise MAPError(f"AdaMerging prior {self.prior} lies outside the clamp range "
                           f"[{self.low}, {self.high}]")
        for name in ("steps", "batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise MAPError(f"AdaMerging {name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or \
                self.seed < 0:
            raise MAPError(f"AdaMerging seed must be a non-negative integer, got {self.seed!r}")

    @classmethod
    def from_flags(cls, values: Mapping[str, Any]) -> "AdaMergingSettings":
        """The settings from the parsed --adamerging-* flags (by dest; defined once, in
        src/run/mode_registry.py's AdaMergingMode) and --seed, the clamp checked by flag."""
        low, high = values["adamerging_clamp"]
        if not low < high:
            raise MAPError(f"--adamerging-clamp {low} {high}: LOW must be below HIGH")
        if not low <= values["adamerging_prior"] <= high:
            raise MAPError(f"--adamerging-prior {values['adamerging_prior']} lies outside "
                           f"--adamerging-clamp {low} {high}")
        beta1, beta2 = values["adamerging_betas"]
        return cls(granularity=values["adamerging"], prior=values["adamerging_prior"],
                   lr=values["adamerging_lr"], beta1=beta1, beta2=beta2,
                   steps=values["adamerging_steps"], batch_size=values["adamerging_batch_size"],
                   seed=values["seed"], low=low, high=high,
                   checkpoint_every=values["adamerging_checkpoint_every"])

    def flag_record(self) -> dict[str, Any]:
        """The settings that decide the learned coefficients, each under its flag's dest
        (so a fingerprint change is named by its flag); checkpoint_every decides nothing."""
        return {"adamerging": self.granularity, "adamerging_prior": self.prior,
                "adamerging_lr": self.lr, "adamerging_betas": [self.beta1, self.beta2],
                "adamerging_steps": self.steps, "adamerging_batch_size": self.batch_size,
                "adamerging_clamp": [self.low, self.high], "seed": self.seed}

    def trajectory(self) -> dict[str, Any]:
        """The settings that decide the coefficients at a given step (a checkpoint made
        under others cannot be continued); ``steps`` only says where to stop."""
        out = asdict(self)
        out.pop("steps")
        out.pop("checkpoint_every")
        return out
