"""MergeEngine: holds theta_pre and every tau_i once and writes theta(c) into one live model.

theta(c) = theta_pre + sum_i c_i tau_i is one matrix-vector product over flat weights,
written into a kept flat buffer and copied into the live encoder's parameters in place:
no deepcopy, no load_state_dict and nothing read from disk per evaluated point.

Memory: the [T, P] tau matrix is allocated once and filled one fine-tuned checkpoint at a
time, so loading peaks at about T + 3 encoders (live encoder, flat theta_pre, tau, one
state dict being read; the theta buffer replaces the state dict once loading is done).

Why one file of ~400 lines: MergeEngine's loading, merging and evaluation share its flat
buffers and per-point timers; evaluation data and precision live in their own modules.
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from map_common.errors import MAPError
from task_vectors.checkpoints import check_activation
from task_vectors.eval_data import EvalTensors, cached_decode
from task_vectors.modeling import ClassificationHead, ImageEncoder
from task_vectors.precision import autocast_for, check_tau_dtype
from task_vectors.task_vector import is_mergeable


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class StreamedStates:
    """Fine-tuned state dicts read one at a time while iterated; none is kept, so the
    engine holds at most one besides its tau matrix. ``seconds`` accumulates read time."""

    def __init__(self, paths: Sequence[str], read: Callable[[str], Mapping[str, torch.Tensor]]):
        self.paths = [str(p) for p in paths]
        self._read = read
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Mapping[str, torch.Tensor]]:
        for path in self.paths:
            start = time.perf_counter()
            state = self._read(path)
            self.seconds += time.perf_counter() - start
            yield state
            del state  # before the next read, not after it


def _summary(values: Sequence[float]) -> tuple[float, float]:
    return (float(statistics.fmean(values)), float(statistics.median(values))) if values \
        else (0.0, 0.0)


class MergeEngine:
    """Merged models theta(c) on one live encoder, evaluated on prepared tensors.

    Parameters: the pretrained ``encoder`` (becomes the live model), one fine-tuned state
    dict per task (in task order; any iterable with a length, read once, e.g.
    ``StreamedStates``), one head per evaluation dataset, and the decoded evaluation sets.

    ``precision`` ("fp32", "bf16", "fp16") autocasts the forward pass only; the merge is
    exact fp32. ``tau_dtype="bf16"`` stores the tau matrix in bf16 (half the memory; the
    merge still accumulates in fp32 over theta_pre). ``tau_transform`` is called once with
    the full [T, P] tau matrix (on the engine's device) and edits it in place (TIES
    trimming, DARE ...). ``origins`` names where each task's weights came from in errors.
    """

    def __init__(self, encoder: ImageEncoder, finetuned: Iterable[Mapping[str, torch.Tensor]],
                 heads: Mapping[str, ClassificationHead], eval_sets: Mapping[str, EvalTensors],
                 *, task_names: Sequence[str] | None = None, device: str = "cpu",
                 batch_size: int = 128, precision: str = "fp32", tau_dtype: str = "fp32",
                 tau_transform: Callable[[torch.Tensor], None] | None = None,
                 origins: Sequence[str] | None = None, pretrained_origin: str | None = None):
        start = time.perf_counter()
        self.device = torch.device(device)
        self.precision = precision
        self._autocast = autocast_for(precision, self.device)
        self.tau_dtype = tau_dtype
        store_dtype = check_tau_dtype(tau_dtype)
        self.batch_size = batch_size
        self.encoder = encoder.to(self.device).eval()
        n = len(finetuned)  # type: ignore[arg-type]
        self.task_names = list(task_names or [f"task{i}" for i in range(n)])
        if len(self.task_names) != n:
            raise ValueError(f"{len(self.task_names)} task names for {n} fine-tuned models")
        live = dict(self.encoder.named_parameters())
        pre = self.encoder.state_dict()
        # Merge every floating weight that is a parameter of the live model.
        self.keys = [k for k in pre if k in live and is_mergeable(pre[k])]
        self._params = [live[k] for k in self.keys]
        self._shapes = [p.shape for p in self._params]
        self._sizes = [p.numel() for p in self._params]
        ends = np.cumsum([0] + self._sizes)
        self._spans = list(zip(ends[:-1].tolist(), ends[1:].tolist()))
        with torch.no_grad():
            self._pre = torch.cat([pre[k].reshape(-1) for k in self.keys]).to(self.device)
            del pre
            self._check_finite(self._pre, pretrained_origin or "pretrained weights")
            self._tau = torch.empty((n, len(self._pre)), dtype=store_dtype, device=self.device)
            self._write_rows(finetuned, origins)
            if tau_transform is not None:
                tau_transform(self._tau)
        self._theta: torch.Tensor | None = None  # allocated at the first merge
        self.heads: dict[str, ClassificationHead] = {}
        self.eval_sets: dict[str, EvalTensors] = {}
        self.coefficients = np.zeros(self.n_tasks)
        self._merge_seconds: list[float] = []
        self._forward_seconds: list[float] = []
        self._images = 0
        self.load_seconds = {"checkpoints": time.perf_counter() - start, "heads": 0.0,
                             "decoding": 0.0}
        self.attach(heads, eval_sets)

    # ------------------------------------------------------------ loading
    def _write_rows(self, finetuned: Iterable[Mapping[str, torch.Tensor]],
                    origins: Sequence[str] | None) -> None:
        """tau_i = theta_i - theta_pre into row i, one state dict alive at a time."""
        exact = self._tau.dtype == self._pre.dtype
        states = iter(finetuned)
        for i, name in enumerate(self.task_names):
            state = next(states)
            where = origins[i] if origins else f"fine-tuned weights of '{name}'"
            missing = [k for k in self.keys if k not in state]
            if missing:
                raise MAPError(f"{where}{': lacks' if origins else ' lack'} {len(missing)} "
                               f"keys of the pretrained model, e.g. {missing[0]}")
            row, src = self._tau[i], None
            for k, (a, b) in zip(self.keys, self._spans):
                src = state[k].reshape(-1)
                if exact:  # same values as converting the whole flat, then subtracting
                    row[a:b].copy_(src)
                else:
                    row[a:b].copy_(src.to(self.device, self._pre.dtype) - self._pre[a:b])
            del state, src
            if exact:
                row.sub_(self._pre)
            self._check_finite(row, where)

    def _check_finite(self, flat: torch.Tensor, where: str) -> None:
        # In blocks: isfinite builds |x| and two masks, 1.5 encoders of temporaries at once.
        step = 1 << 22
        if all(bool(torch.isfinite(flat[a:a + step]).all()) for a in range(0, len(flat), step)):
            return
        for k, (a, b) in zip(self.keys, self._spans):
            if not bool(torch.isfinite(flat[a:b]).all()):
                raise MAPError(f"{where}: non-finite values (NaN or inf) in tensor '{k}'")

    def embed_dim(self) -> int | None:
        """Width of the encoder's output features (what a head takes), if known."""
        dim = getattr(getattr(self.encoder.model, "visual", None), "output_dim", None)
        return int(dim) if dim is not None else None

    def attach(self, heads: Mapping[str, ClassificationHead],
               eval_sets: Mapping[str, EvalTensors], *,
               head_origins: Mapping[str, str] | None = None) -> None:
        """Add heads and evaluation sets, checking that each head fits the encoder's
        feature width and the labels of its evaluation set."""
        head_origins = head_origins or {}
        width = self.embed_dim()
        for name, head in heads.items():
            where = head_origins.get(name, f"head of '{name}'")
            check_head(head, where, width=width)
            if name in eval_sets and len(eval_sets[name].labels):
                top = int(eval_sets[name].labels.max())
                if top >= head.out_features:
                    raise MAPError(f"{where}: {head.out_features} classes, but the labels "
                                   f"of {name} go up to {top}")
        self.heads.update({name: head.to(self.device).eval() for name, head in heads.items()})
        self.eval_sets.update({name: data.to(self.device) for name, data in eval_sets.items()})

    @classmethod
    def from_checkpoints(cls, *, model_name: str, pretrained: str, finetuned: Mapping[str, str],
                         heads: Mapping[str, ClassificationHead | str], datasets: Sequence[str],
                         data_location: str, device: str = "cpu", batch_size: int = 128,
                         max_eval_samples: int | None = None, num_workers: int | None = None,
                         openclip_cachedir: str | None = None, cache_dir: str | None = None,
                         precision: str = "fp32", tau_dtype: str = "fp32",
                         tau_transform: Callable[[torch.Tensor], None] | None = None,
                         merge_method: Any = None) -> "MergeEngine":
        """Load everything once: the pretrained encoder, each task's fine-tuned weights
        (``finetuned``: task -> path, in task order; streamed into the tau matrix one file
        at a time), a head per evaluation dataset (a head or a path), and the decoded
        evaluation split of each dataset. ``merge_method`` (a ``task_vectors.merge_methods``
        object) gives the tau transform when ``tau_transform`` is not given."""
        from task_vectors.checkpoints import check_compatible, load_encoder, load_head, \
            load_state_dict
        from task_vectors.datasets.registry import check_dataset_name

        for name in datasets:
            check_dataset_name(name)
        autocast_for(precision, torch.device(device))  # refuse before minutes of loading
        check_tau_dtype(tau_dtype)
        if tau_transform is None and merge_method is not None:
            tau_transform = merge_method.tau_transform()
        start = time.perf_counter()
        encoder = load_encoder(pretrained, model_name, openclip_cachedir=openclip_cachedir)
        check_activation(encoder, finetuned.values())

        def read(path: str) -> dict[str, torch.Tensor]:
            reference = encoder.state_dict()  # views of the live weights: no copy
            state = load_state_dict(path, reference=reference)
            check_compatible(reference, state, path)
            return state

        paths = [str(p) for p in finetuned.values()]
        with tqdm(total=len(paths), desc="loading fine-tuned models", leave=False,
                  disable=len(paths) < 3) as bar:
            def read_one(path: str) -> dict[str, torch.Tensor]:
                state = read(path)
                bar.update()
                return state

            engine = cls(encoder, StreamedStates(paths, read_one), {}, {},
                         task_names=list(finetuned), device=device, batch_size=batch_size,
                         precision=precision, tau_dtype=tau_dtype, tau_transform=tau_transform,
                         origins=paths, pretrained_origin=str(pretrained))
        checkpoints_s = time.perf_counter() - start

        start = time.perf_counter()
        loaded_heads, head_origins = {}, {}
        width = engine.embed_dim()
        for name, head in heads.items():
            head_origins[name] = f"head of '{name}'" if isinstance(head, ClassificationHead) \
                else str(head)
            loaded_heads[name] = head if isinstance(head, ClassificationHead) else load_head(head)
            check_head(loaded_heads[name], head_origins[name], width=width,
                       n_classes=_class_count(name, data_location), dataset=name)
        heads_s = time.perf_counter() - start

        start = time.perf_counter()
        eval_sets = {name: cached_decode(name, data_location, encoder.val_preprocess,
                                         cache_dir=cache_dir, max_samples=max_eval_samples,
                                         num_workers=num_workers) for name in datasets}
        decoding_s = time.perf_counter() - start
        engine.attach(loaded_heads, eval_sets, head_origins=head_origins)
        engine.load_seconds = {"checkpoints": checkpoints_s, "heads": heads_s,
                               "decoding": decoding_s}
        return engine

    # ------------------------------------------------------------ weights
    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    @property
    def n_params(self) -> int:
        return len(self._pre)

    @property
    def tau(self) -> torch.Tensor:
        """The [T, P] task-vector matrix (a view: read it, do not write it)."""
        return self._tau.detach()

    @property
    def theta_pre(self) -> torch.Tensor:
        """The flat pretrained weights [P] (a view: read it, do not write it)."""
        return self._pre.detach()

    @torch.no_grad()
    def transform_tau(self, transform: Callable[[torch.Tensor], Any]) -> None:
        """Apply an in-place tau transform after loading: a learned merge method's, learned
        on the task vectors as fine-tuned first (the transforms known before loading are
        applied by the constructor)."""
        transform(self._tau)

    def task_vector(self, i: int) -> dict[str, torch.Tensor]:
        parts = self._tau[i].split(self._sizes)
        return {k: t.view(s) for k, t, s in zip(self.keys, parts, self._shapes)}

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat [P] vector as {key: tensor} views in the encoder's shapes."""
        return {k: t.view(s) for k, t, s in zip(self.keys, flat.split(self._sizes),
                                                 self._shapes)}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _buffer(self) -> torch.Tensor:
        if self._theta is None:
            self._theta = torch.empty_like(self._pre)
        return self._theta

    def _merge(self, c: torch.Tensor) -> torch.Tensor:
        theta = self._buffer()
        if not self.n_tasks:
            return theta.copy_(self._pre)
        if self._tau.dtype == self._pre.dtype:
            return torch.addmv(self._pre, self._tau.T, c, out=theta)
        # bf16 tau: widen a block of columns at a time and accumulate in fp32.
        step = max(1, (1 << 22) // self.n_tasks)
        for a in range(0, self.n_params, step):
            b = min(a + step, self.n_params)
            torch.addmv(self._pre[a:b], self._tau[:, a:b].float().T, c, out=theta[a:b])
        return theta

    def _write_live(self, theta: torch.Tensor) -> None:
        torch._foreach_copy_(self._params,
                             [t.view(s) for t, s in zip(theta.split(self._sizes), self._shapes)])

    @torch.no_grad()
    def set_coefficients(self, coefficients: Sequence[float]) -> None:
        """Write theta_pre + sum_i c_i tau_i into the live encoder, in place."""
        c = torch.as_tensor(np.asarray(coefficients, dtype=np.float64), dtype=self._pre.dtype,
                            device=self.device)
        if c.shape != (self.n_tasks,):
            raise MAPError(f"expected {self.n_tasks} coefficients, got {tuple(c.shape)}")
        start = time.perf_counter()
        self._write_live(self._merge(c))
        self._sync()
        self._merge_seconds.append(time.perf_counter() - start)
        self.coefficients = np.asarray(coefficients, dtype=float).copy()

    @torch.no_grad()
    def set_theta(self, flat: torch.Tensor) -> None:
        """Write an arbitrary flat theta [P] (e.g. a SLERP or TIES merge) into the live
        encoder; ``coefficients`` becomes NaN (the model is no sum of task vectors)."""
        if not torch.is_tensor(flat) or tuple(flat.shape) != (self.n_params,):
            raise ValueError(f"set_theta expects a tensor of shape ({self.n_params},), got "
                             f"{tuple(flat.shape) if torch.is_tensor(flat) else type(flat)}")
        start = time.perf_counter()
        self._write_live(self._buffer().copy_(flat))
        self._sync()
        self._merge_seconds.append(time.perf_counter() - start)
        self.coefficients = np.full(self.n_tasks, np.nan)

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, datasets: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
        """{dataset: {"accuracy", "loss", "entropy"}} of the live model (the mean over the
        set's images; entropy reads no label); one host sync per dataset."""
        names = list(datasets or list(self.eval_sets))
        for name in names:
            if name not in self.eval_sets or name not in self.heads:
                raise MAPError(f"no evaluation data or head prepared for '{name}'")
        start = time.perf_counter()
        results, images = {}, 0
        for name in names:
            head, data = self.heads[name], self.eval_sets[name]
            correct = torch.zeros((), device=self.device)
            loss = torch.zeros((), device=self.device)
            ent = torch.zeros((), device=self.device)
            for x, y in data.batches(self.batch_size):
                with self._autocast():
                    logits = head(self.encoder(x))
                logits = logits.float()
                correct += (logits.argmax(dim=1) == y).sum()
                loss += F.cross_entropy(logits, y, reduction="sum")
                ent += entropy(logits).sum()
            n = len(data.labels)
            images += n
            stats = torch.stack([correct, loss, ent]).cpu()
            results[name] = {"accuracy": float(stats[0]) / n, "loss": float(stats[1]) / n,
                             "entropy": float(stats[2]) / n}
        self._sync()
        self._forward_seconds.append(time.perf_counter() - start)
        self._images += images
        return results

    def evaluate_at(self, coefficients: Sequence[float], datasets: Sequence[str] | None = None
                    ) -> dict[str, dict[str, float]]:
        self.set_coefficients(coefficients)
        return self.evaluate(datasets)

    def evaluate_theta(self, flat: torch.Tensor, datasets: Sequence[str] | None = None
                       ) -> dict[str, dict[str, float]]:
        self.set_theta(flat)
        return self.evaluate(datasets)

    # ------------------------------------------------------------ statistics
    def stats(self) -> dict:
        """Per-point timings, throughput, peak memory and load times (JSON-serialisable)."""
        merge_mean, merge_median = _summary(self._merge_seconds)
        fwd_mean, fwd_median = _summary(self._forward_seconds)
        total_forward = sum(self._forward_seconds)
        out = {"points": len(self._forward_seconds), "merges": len(self._merge_seconds),
               "merge_seconds_mean": merge_mean, "merge_seconds_median": merge_median,
               "forward_seconds_mean": fwd_mean, "forward_seconds_median": fwd_median,
               "images": int(self._images),
               "images_per_second": self._images / total_forward if total_forward else 0.0,
               "peak_rss_bytes": peak_rss_bytes(),
               "load_seconds": {k: float(v) for k, v in self.load_seconds.items()},
               "precision": self.precision, "tau_dtype": self.tau_dtype}
        if self.device.type == "cuda":
            out["cuda_max_memory_allocated_bytes"] = int(
                torch.cuda.max_memory_allocated(self.device))
        return out


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits) per row: [B, K] -> [B], in fp32. The one
    definition: the evaluation's "entropy" metric and AdaMerging's loss."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def check_head(head: ClassificationHead, where: str, *, width: int | None = None,
               n_classes: int | None = None, dataset: str | None = None) -> None:
    """MAPError naming the head's file when it does not fit the encoder or the dataset."""
    if width is not None and head.in_features != width:
        raise MAPError(f"{where}: the head takes {head.in_features}-wide features, the "
                       f"encoder gives {width}")
    if n_classes is not None and head.out_features != n_classes:
        raise MAPError(f"{where}: the head has {head.out_features} classes, the dataset "
                       f"{dataset} has {n_classes}")


def _class_count(dataset: str, data_location: str) -> int | None:
    """The registry's class count of a dataset, or None where the data cannot be listed
    (e.g. only its decoded cache exists); the decoded labels are checked later anyway."""
    from task_vectors.datasets.registry import get_dataset

    try:
        return len(get_dataset(dataset, data_location).classnames)
    except (MAPError, OSError):
        return None
