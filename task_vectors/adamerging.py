"""AdaMerging: merge coefficients learned without labels (Yang et al., ICLR 2024).

The merged encoder is theta(lambda) = theta_pre + sum_i lambda_i * tau_i with one
coefficient per task ("task-wise") or one per task and per parameter tensor of the image
encoder ("layer-wise", lambda_{i,l}). The coefficients minimise the mean over tasks of the
mean Shannon entropy of each task head's softmax on unlabeled images (labels are never
read). The original's recipe and defaults (``AdaMergingSettings``): every coefficient
starts at the prior 0.3, Adam with lr 1e-3 and betas (0.9, 0.999), 500 steps of one
shuffled batch of 16 images per task, coefficients clamped to [0, 1] after each step.
AdaMerging++ is the same on TIES-preprocessed task vectors (top 20% magnitudes per task,
signs elected): build the engine with ``tau_transform=merging.ties_vectors`` (or pass
``tau``).

How it is computed (the memory and speed points of the method's best implementations):

* The merged weights are built functionally from the engine's flat theta_pre and [T, P]
  tau matrix (``torch.func.functional_call`` on the engine's live encoder): no model and
  no task vector is copied.
* Each step merges once, outside autograd (one [P] of merged weights). Every task's
  forward and backward then runs in turn; as each weight tensor's gradient g_l arrives, a
  hook folds it into the coefficients' gradient (the merge is linear:
  d/d lambda_{i,l} = <tau_{i,l}, g_l>) and frees it. So one task's activations are alive at
  a time and no [P] gradient is held (the original keeps all T graphs until one backward,
  and autograd holds every g_l until the merge's backward runs). ``joint=True`` runs the
  original's pattern (same gradient; for the memory benchmark).
* Images are the engine's decoded evaluation sets (uint8 on the device, decoded once).
  The batch of task i at step s is a pure function of (seed, i, s): epoch e's order is a
  ``torch.randperm`` seeded by SeedSequence([seed, i, e]). So the step number is the whole
  sampler state, and a resumed run draws the same batches as an uninterrupted one.
* A checkpoint (coefficients, Adam's state, step, entropy curve, settings) is written
  atomically every ``checkpoint_every`` steps and at the end; ``learn`` continues from it.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.func import functional_call
from tqdm.auto import tqdm

from map_common.errors import MAPError
from map_common.files import atomic_write
from task_vectors.engine import entropy  # noqa: F401  (the one definition; am.entropy)
from task_vectors.adamerging_settings import GRANULARITIES, AdaMergingSettings  # noqa: F401
from task_vectors.precision import autocast_for

CHECKPOINT_FORMAT = 1


@dataclass
class Layout:
    """The encoder's merged parameter tensors in the engine's flat order."""

    keys: list[str]
    shapes: list[torch.Size]
    spans: list[tuple[int, int]]

    @classmethod
    def of_spans(cls, spans: Sequence[tuple[int, int]]) -> "Layout":
        """A layout of flat segments (names and shapes unknown): enough for merged_flat."""
        spans = [(int(a), int(b)) for a, b in spans]
        return cls([str(i) for i in range(len(spans))], [torch.Size([b - a]) for a, b in spans],
                   spans)

    @classmethod
    def of(cls, engine) -> "Layout":
        views = engine.unflatten(engine.theta_pre)
        keys = list(views)
        sizes = [v.numel() for v in views.values()]
        ends = np.cumsum([0] + sizes).tolist()
        return cls(keys, [v.shape for v in views.values()], list(zip(ends[:-1], ends[1:])))

    def __len__(self) -> int:
        return len(self.keys)


def method_name(granularity: str, vectors: str = "ta") -> str:
    """'AdaMerging (task-wise)', 'AdaMerging++ (layer-wise)', ... (++: TIES vectors)."""
    return f"AdaMerging{'++' if vectors == 'ties' else ''} ({granularity}-wise)"


def initial_coefficients(n_tasks: int, n_layers: int, settings: AdaMergingSettings,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """[T] (task-wise) or [T, L] (layer-wise), every entry the prior."""
    shape = (n_tasks,) if settings.granularity == "task" else (n_tasks, n_layers)
    return torch.full(shape, float(settings.prior), dtype=torch.float32, device=device)


def merged_weights(theta_pre: torch.Tensor, tau: torch.Tensor, lambdas: torch.Tensor,
                   layout: Layout) -> list[torch.Tensor]:
    """theta_pre + sum_i lambda_i tau_i per parameter tensor, differentiable in lambdas
    ([T]: one per task; [T, L]: one per task and tensor). tau is read, never copied whole
    (a bf16 tau is widened one tensor at a time)."""
    if lambdas.ndim == 1 and tau.dtype == theta_pre.dtype:
        flat = torch.addmv(theta_pre, tau.T, lambdas)
        return [flat[a:b].view(s) for (a, b), s in zip(layout.spans, layout.shapes)]
    out = []
    for layer, ((a, b), s) in enumerate(zip(layout.spans, layout.shapes)):
        lam = lambdas if lambdas.ndim == 1 else lambdas[:, layer]
        out.append((theta_pre[a:b] + lam @ tau[:, a:b].to(theta_pre.dtype)).view(s))
    return out


@torch.no_grad()
def merged_flat(theta_pre: torch.Tensor, tau: torch.Tensor, lambdas: torch.Tensor | np.ndarray,
                layout: Layout) -> torch.Tensor:
    """The merged weights as one new flat [P] tensor (for evaluation and saving)."""
    lam = torch.as_tensor(np.asarray(lambdas, dtype=np.float32), device=theta_pre.device)
    return torch.cat([w.reshape(-1) for w in merged_weights(theta_pre, tau, lam, layout)])


def batch_indices(n: int, batch_size: int, seed: int, task: int, step: int,
                  _cache: dict | None = None) -> torch.Tensor:
    """The images of ``task`` at ``step``: the (step mod k)-th batch of epoch
    step // k (k = n // batch_size full batches per epoch) of a permutation seeded by
    SeedSequence([seed, task, epoch]); the whole set (permuted) when n < batch_size."""
    per_epoch = max(1, n // batch_size)
    epoch, j = divmod(step, per_epoch)
    key = (seed, task, epoch, n)
    order = None if _cache is None else _cache.get(key)
    if order is None:
        state = np.random.SeedSequence([seed, task, epoch]).generate_state(1, dtype=np.uint64)[0]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(state)))
        if _cache is not None:
            _cache.clear()  # one epoch per task is enough
            _cache[key] = order
    return order[j * batch_size:(j + 1) * batch_size]


@dataclass
class AdaMergingResult:
    """Learned coefficients ([T] or [T, L], numpy) and the entropy of every step."""

    lambdas: np.ndarray
    layers: list[str]
    tasks: list[str]
    datasets: list[str]
    curve: np.ndarray            # [steps, T]: entropy per task at each step's batch
    seconds: float               # this process's learning time
    resumed_from: int = 0        # step of the checkpoint continued (0: started fresh)
    settings: AdaMergingSettings = field(default_factory=AdaMergingSettings)

    def per_task(self) -> dict[str, Any]:
        """JSON-able coefficients: {task: lambda} or {task: {layer: lambda}}."""
        if self.lambdas.ndim == 1:
            return {t: float(v) for t, v in zip(self.tasks, self.lambdas)}
        return {t: {k: float(v) for k, v in zip(self.layers, row)}
                for t, row in zip(self.tasks, self.lambdas)}


class EntropyObjective:
    """The engine's weights, heads and images as AdaMerging's objective: the mean over
    tasks of the mean entropy of task k's head on task k's batch of a step."""

    def __init__(self, engine, datasets: Sequence[str],
                 settings: AdaMergingSettings = AdaMergingSettings(),
                 tau: torch.Tensor | None = None):
        self.engine, self.settings = engine, settings
        self.datasets = list(datasets)
        missing = [d for d in self.datasets if d not in engine.eval_sets or d not in engine.heads]
        if missing:
            raise MAPError(f"AdaMerging: no evaluation data or head prepared for {missing[0]}")
        self.pre = engine.theta_pre
        self.tau = engine.tau if tau is None else tau.detach()
        if self.tau.shape != (engine.n_tasks, engine.n_params):
            raise ValueError(f"tau must be [{engine.n_tasks}, {engine.n_params}], got "
                             f"{tuple(self.tau.shape)}")
        self.layout = Layout.of(engine)
        self.autocast = autocast_for(engine.precision, engine.device)
        # Heads are not learned: their weights enter the graph as constants.
        self.heads = {d: (engine.heads[d], {k: v.detach() for k, v in
                                            engine.heads[d].named_parameters()})
                      for d in self.datasets}
        self._orders: list[dict] = [{} for _ in self.datasets]

    def images(self, k: int, step: int) -> torch.Tensor:
        data = self.engine.eval_sets[self.datasets[k]]
        idx = batch_indices(len(data.images), self.settings.batch_size, self.settings.seed, k,
                            step, self._orders[k])
        return data.normalized(idx.to(data.images.device))

    def task_entropy(self, params: dict[str, torch.Tensor], k: int, step: int) -> torch.Tensor:
        """Mean entropy of task k's head on its batch of ``step``, through the encoder
        at ``params``."""
        head, head_params = self.heads[self.datasets[k]]
        with self.autocast():
            features = functional_call(self.engine.encoder, params, (self.images(k, step),))
            logits = functional_call(head, head_params, (features,))
        return entropy(logits).mean()

    @torch.no_grad()
    def values(self, lambdas: torch.Tensor, step: int) -> torch.Tensor:
        """Per-task mean entropies [T] at ``lambdas`` on the batches of ``step``."""
        params = dict(zip(self.layout.keys, merged_weights(self.pre, self.tau, lambdas,
                                                           self.layout)))
        return torch.stack([self.task_entropy(params, k, step)
                            for k in range(len(self.datasets))])

    def gradient(self, lambdas: torch.Tensor, step: int, *, joint: bool = False
                 ) -> torch.Tensor:
        """Accumulate d(mean task entropy)/d lambdas into lambdas.grad; returns the
        per-task entropies [T] (detached)."""
        n = len(self.datasets)
        if joint:  # the original: every task's graph alive until one backward
            weights = merged_weights(self.pre, self.tau, lambdas, self.layout)
            params = dict(zip(self.layout.keys, weights))
            values = torch.stack([self.task_entropy(params, k, step) for k in range(n)])
            values.mean().backward()
            return values.detach()
        with torch.no_grad():
            leaves = [w.detach().requires_grad_() for w in
                      merged_weights(self.pre, self.tau, lambdas.detach(), self.layout)]
        grad = torch.zeros_like(lambdas, memory_format=torch.contiguous_format)
        handles = [leaf.register_post_accumulate_grad_hook(self._fold(grad, layer))
                   for layer, leaf in enumerate(leaves)]
        params = dict(zip(self.layout.keys, leaves))
        values = []
        try:
            for k in range(n):
                h = self.task_entropy(params, k, step)
                (h / n).backward()
                values.append(h.detach())
                del h  # task k's graph goes before task k+1's forward
        finally:
            for handle in handles:
                handle.remove()
        lambdas.grad = grad if lambdas.grad is None else lambdas.grad + grad
        return torch.stack(values)

    def _fold(self, grad: torch.Tensor, layer: int):
        """The hook of tensor ``layer`` (l): the merge is linear, so its gradient g_l gives
        d/d lambda_{i,l} = <tau_{i,l}, g_l> (summed over l when task-wise); added to
        ``grad`` as soon as g_l exists, then g_l is freed."""
        a, b = self.layout.spans[layer]

        @torch.no_grad()
        def fold(weight: torch.Tensor) -> None:
            g = weight.grad.reshape(-1)
            part = self.tau[:, a:b].to(g.dtype) @ g
            (grad if grad.ndim == 1 else grad[:, layer]).add_(part)
            weight.grad = None

        return fold


def _identity(engine, datasets: Sequence[str], vectors: str, settings: AdaMergingSettings,
              n_layers: int) -> dict[str, Any]:
    return {"tasks": list(engine.task_names), "datasets": list(datasets), "vectors": vectors,
            "n_params": int(engine.n_params), "n_layers": int(n_layers),
            "settings": settings.trajectory()}


def check_checkpoint(path: str | Path, tasks: Sequence[str], datasets: Sequence[str],
                     settings: AdaMergingSettings, vectors: str = "ta") -> int:
    """Refuse (MAPError) a checkpoint at ``path`` that ``learn`` could not continue, before
    any model is loaded; returns its step (0 when there is none)."""
    path = Path(path)
    partial = {"tasks": list(tasks), "datasets": list(datasets), "vectors": vectors,
               "settings": settings.trajectory()}
    state = _load_checkpoint(path, partial, only=partial)
    step = 0 if state is None else int(state["step"])
    _check_steps(path, step, settings)
    return step


def _check_steps(path: Path, step: int, settings: AdaMergingSettings) -> None:
    if step > settings.steps:
        raise MAPError(f"{path} holds {step} steps, more than the {settings.steps} asked "
                       "for; ask for at least as many, or use another --exp-id")


def _load_checkpoint(path: Path, identity: dict[str, Any], only: dict | None = None
                     ) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: the user deletes it or changes --exp-id
        raise MAPError(f"{path}: unreadable AdaMerging checkpoint ({type(exc).__name__}); "
                       "delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise MAPError(f"{path}: not an AdaMerging checkpoint of this version; delete it to "
                       "start over")
    theirs = state.get("identity") or {}
    if only is not None:
        theirs = {k: theirs.get(k) for k in only}
    if theirs != identity:
        changed = sorted(k for k in set(identity) | set(theirs)
                         if identity.get(k) != theirs.get(k))
        if "settings" in changed:
            ours_s, theirs_s = identity["settings"], theirs.get("settings") or {}
            changed = [f"settings.{k}" for k in sorted(ours_s) if ours_s[k] != theirs_s.get(k)]
        raise MAPError(f"{path} was learned with other {', '.join(changed)}; rerun with the "
                       "same settings, or use another --exp-id (or delete the checkpoint)")
    return state


def _save_checkpoint(path: Path, identity: dict[str, Any], step: int, lambdas: torch.Tensor,
                     optimizer: torch.optim.Optimizer, curve: list[list[float]]) -> None:
    state = {"format": CHECKPOINT_FORMAT, "identity": identity, "step": int(step),
             "lambdas": lambdas.detach().cpu().clone(), "optimizer": optimizer.state_dict(),
             "curve": torch.tensor(curve, dtype=torch.float64).reshape(len(curve), -1)}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def learn(engine, datasets: Sequence[str], settings: AdaMergingSettings = AdaMergingSettings(),
          *, tau: torch.Tensor | None = None, vectors: str = "ta",
          checkpoint: str | Path | None = None, joint: bool = False,
          progress: bool = True, desc: str | None = None) -> AdaMergingResult:
    """Learn AdaMerging coefficients over the engine's task vectors (or ``tau``, e.g.
    TIES-preprocessed ones; ``vectors`` names them in the checkpoint), one dataset per task
    vector (its head and its evaluation images, labels unread).

    With ``checkpoint``, the state is saved there every ``settings.checkpoint_every`` steps
    and at the end, and a checkpoint found there (same tasks, datasets, vectors and
    trajectory settings) is continued: the result equals an uninterrupted run's."""
    if len(datasets) != engine.n_tasks:
        raise MAPError(f"AdaMerging needs one dataset per task vector: {engine.n_tasks} task "
                       f"vectors, {len(datasets)} datasets")
    problem = EntropyObjective(engine, datasets, settings, tau)
    layout, device = problem.layout, engine.device
    identity = _identity(engine, datasets, vectors, settings, len(layout))
    path = Path(checkpoint) if checkpoint is not None else None
    lambdas = initial_coefficients(engine.n_tasks, len(layout), settings, device)
    lambdas.requires_grad_(True)
    optimizer = torch.optim.Adam([lambdas], lr=settings.lr, betas=(settings.beta1,
                                                                   settings.beta2))
    start, curve = 0, []
    state = _load_checkpoint(path, identity) if path is not None else None
    if state is not None:
        start = int(state["step"])
        _check_steps(path, start, settings)
        with torch.no_grad():
            lambdas.copy_(state["lambdas"].to(device))
        optimizer.load_state_dict(state["optimizer"])
        curve = state["curve"].tolist()
    started = time.perf_counter()
    label = desc or f"AdaMerging ({settings.granularity}-wise)"
    # Written to a log file (a batch job's stderr is no terminal) the bar updates every 30 s.
    interactive = getattr(sys.stderr, "isatty", lambda: False)()
    with tqdm(total=settings.steps, initial=start, desc=label, disable=not progress,
              unit="step", mininterval=0.1 if interactive else 30.0) as bar:
        for step in range(start, settings.steps):
            optimizer.zero_grad(set_to_none=True)
            values = problem.gradient(lambdas, step, joint=joint)
            optimizer.step()
            with torch.no_grad():
                lambdas.clamp_(settings.low, settings.high)
            curve.append(values.cpu().double().tolist())
            bar.set_postfix(entropy=f"{float(np.mean(curve[-1])):.4f}", refresh=False)
            bar.update()
            done = step + 1
            if path is not None and (done % settings.checkpoint_every == 0 or
                                     done == settings.steps):
                _save_checkpoint(path, identity, done, lambdas, optimizer, curve)
    return AdaMergingResult(
        lambdas=lambdas.detach().cpu().numpy().astype(float), layers=list(layout.keys),
        tasks=list(engine.task_names), datasets=list(datasets),
        curve=np.asarray(curve, dtype=float).reshape(len(curve), engine.n_tasks),
        seconds=time.perf_counter() - started, resumed_from=start, settings=settings)


def evaluate_merged(engine, flat: torch.Tensor, datasets: Sequence[str]
                    ) -> dict[str, dict[str, float]]:
    """{dataset: {"accuracy", "loss", "entropy"}} of theta = ``flat`` over each full
    evaluation set: the engine's own evaluation (labels read there for reporting only)."""
    return engine.evaluate_theta(flat, datasets)
