"""Nested MAP: merge T tasks two at a time along a tree.

Every model in play is θ_pre + Σ_i a_i τ_i for a coefficient vector a over the ORIGINAL
task vectors (a fine-tuned model for task i is a = e_i). Merging A (coefficients a) and
B (coefficients b) at pair coefficients (c1, c2) gives θ_pre + c1·τ_A + c2·τ_B, i.e. the
composed coefficients c1·a + c2·b. The whole tree therefore lives in that coefficient
space, and the caller's engine only ever sets coefficients over the T original vectors.

This module holds the bookkeeping only: which two models to pair, how the tasks of each
side are aggregated into one objective, and the round records. The expensive parts are
injected: `run_level` (or `run_pair`) runs MAP on a level's pairs and picks a point for
each, `measure_level` (or `measure`) evaluates the merged models. The tree is built level
by level (all of a level's pairs are known before any is run), so a pool of workers can
evaluate a level's pairs together; records stay one per pair, with their "level".

Why one file of ~440 lines: the pairing, the preference aggregation and the round replay
(resume) all work on the same PoolModel records; about a third of it is input checking.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from map_common.errors import MAPError
from map_common.jsonable import jsonable
from src.core.objectives import validate_preference  # noqa: F401  (kept importable from here)
from src.core.pick_check import at_or_above
from src.core.sampling import design

# --nested-context: what the task vectors outside a pair are set to while the pair is merged
# and measured. none: 0 (the original's pairs, each in isolation); task-arithmetic: task
# arithmetic's best shared λ over all the tasks, so each pair is chosen against the
# interference the rest of the merge brings (bench/many_tasks.py: a pair chosen alone at
# c near 1 keeps ratios that no longer balance its tasks at the final λ near 0.3).
CONTEXTS = ("none", "task-arithmetic")

# Accuracy gaps closer than this count as ties, so float noise (0.8-0.7 vs 0.7-0.6)
# does not decide a pairing; ties then fall back to names.
_TIE_DECIMALS = 12


@dataclass
class PoolModel:
    """One model in the pool: an original fine-tuned model (leaf) or a merge."""

    name: str
    tasks: tuple[str, ...]
    coefficients: np.ndarray  # (T,) over the original task order
    accuracy: float  # used for pairing only
    measured: dict[str, float] = field(default_factory=dict)
    children: tuple[str, ...] = ()
    round: int = -1  # -1 for leaves; otherwise the 0-based round that built it


@dataclass
class NestedResult:
    final: PoolModel
    records: list[dict]
    models: dict[str, PoolModel]  # every model ever in the pool, by name
    pool_history: list[list[str]]  # pool names before each level, then the final pool


# ---------------------------------------------------------------------------- inputs


def _validate_accuracies(single_accuracy: Mapping, tasks: Sequence[str]) -> dict[str, float]:
    if not isinstance(single_accuracy, Mapping):
        raise MAPError(
            "single-task accuracies must be a mapping of task name to accuracy, "
            f"got {type(single_accuracy).__name__}"
        )
    out = {}
    for task in tasks:
        if task not in single_accuracy:
            raise MAPError(f"no single-task accuracy for task {task!r}")
        value = single_accuracy[task]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise MAPError(f"single-task accuracy for {task!r} must be a finite number, got {value!r}")
        out[task] = float(value)
    return out


# ------------------------------------------------------------------- pure pieces


def pair_closest(pool: Sequence[PoolModel]) -> tuple[int, int]:
    """Indices (i < j) of the two models whose pairing accuracies are closest.

    Ties (equal gap up to float noise) go to the pair whose sorted names come first,
    so the tree does not depend on the order the pool happens to be in.
    """
    if len(pool) < 2:
        raise ValueError(f"pairing needs at least 2 models in the pool, got {len(pool)}")
    best_key, best = None, (0, 1)
    for i in range(len(pool)):
        for j in range(i + 1, len(pool)):
            gap = round(abs(pool[i].accuracy - pool[j].accuracy), _TIE_DECIMALS)
            key = (gap, tuple(sorted((pool[i].name, pool[j].name))))
            if best_key is None or key < best_key:
                best_key, best = key, (i, j)
    return best


def model_preference(model: PoolModel, preference: Mapping[str, float]) -> float:
    """A model's preference weight: the sum of its tasks' weights."""
    return float(sum(preference[t] for t in model.tasks))


def pair_preference(
    model_a: PoolModel, model_b: PoolModel, preference: Mapping[str, float]
) -> np.ndarray:
    """(2,) preference vector for picking a point on the pair's front."""
    return np.array([model_preference(model_a, preference), model_preference(model_b, preference)])


def task_weights(tasks: Sequence[str], preference: Mapping[str, float]) -> np.ndarray:
    """Normalised weights of `tasks`; uniform when they all weigh 0.

    A side whose tasks all weigh 0 still needs an objective (its front axis exists), and
    the plain mean is the neutral choice.
    """
    w = np.array([float(preference[t]) for t in tasks], dtype=float)
    total = w.sum()
    if total <= 0:
        return np.full(len(tasks), 1.0 / len(tasks))
    return w / total


def preference_mean(values: Mapping[str, float], tasks: Sequence[str], preference: Mapping[str, float]) -> float:
    """Preference-weighted mean of per-task values (a merged model's pairing accuracy)."""
    w = task_weights(tasks, preference)
    return float(np.dot(w, [float(values[t]) for t in tasks]))


def side_scores(
    metrics: np.ndarray | Mapping[str, np.ndarray],
    tasks_a: Sequence[str],
    tasks_b: Sequence[str],
    preference: Mapping[str, float],
    columns: Sequence[str] | None = None,
) -> np.ndarray:
    """(n, 2) objectives of a pair: weighted mean over side A's tasks, over side B's.

    `metrics` is either an (n, k) array whose columns are the tasks in `columns`
    (default: tasks_a then tasks_b), or a mapping task -> (n,) values.
    """
    if isinstance(metrics, Mapping):
        table = {t: np.asarray(v, dtype=float).reshape(-1) for t, v in metrics.items()}
    else:
        arr = np.asarray(metrics, dtype=float)
        cols = list(tasks_a) + list(tasks_b) if columns is None else list(columns)
        if arr.ndim != 2 or arr.shape[1] != len(cols):
            raise ValueError(
                f"metrics must be (n, {len(cols)}) for columns {cols}, got shape {arr.shape}"
            )
        table = {t: arr[:, k] for k, t in enumerate(cols)}
    missing = [t for t in (*tasks_a, *tasks_b) if t not in table]
    if missing:
        raise ValueError(f"metrics have no column for tasks {missing}; they have {sorted(table)}")
    if not tasks_a or not tasks_b:
        raise ValueError("each side of a pair needs at least one task")

    def side(tasks: Sequence[str]) -> np.ndarray:
        return np.column_stack([table[t] for t in tasks]) @ task_weights(tasks, preference)

    return np.column_stack([side(tasks_a), side(tasks_b)])


def compose_coefficients(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Coefficients over the original task vectors of merging A and B at c: c0·a + c1·b."""
    a, b, c = (np.asarray(x, dtype=float) for x in (a, b, c))
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D of the same length, got {a.shape} and {b.shape}")
    if c.shape != (2,):
        raise ValueError(f"pair coefficients must have shape (2,), got {c.shape}")
    return c[0] * a + c[1] * b


def with_context(coefficients: np.ndarray, tasks: Sequence[str], models: Sequence[str],
                 context: float | None) -> np.ndarray:
    """The coefficients a merge over ``tasks`` is evaluated at: its own on its tasks, and
    ``context`` (task arithmetic's λ; None: 0) on every other model's task vector."""
    c = np.asarray(coefficients, dtype=float)
    if context is None:
        return c
    inside = np.array([m in tasks for m in models])
    return np.where(inside, c, float(context))


def hand_over(tree: tuple[np.ndarray, np.ndarray],
              candidates: Sequence[tuple[np.ndarray, np.ndarray, str]],
              floor: tuple[float, float] | None, weights: Sequence[float], sense: str,
              choose: Callable[[Sequence[tuple[np.ndarray, np.ndarray, str]]],
                               tuple[np.ndarray, np.ndarray, str]]
              ) -> tuple[np.ndarray, np.ndarray, str]:
    """(coefficients, metrics, source) of the model nested hands over: the tree's final model
    (``tree``: its coefficients and metrics over every task) when there is no ``floor`` or it
    is at or above it on the preference-weighted mean and the worst task; else ``choose``'s
    pick among the evaluated ``candidates`` (C, Y, source) over every task, which holds task
    arithmetic's sweep, so some model at the floor is always among them."""
    c, y = (np.asarray(x, dtype=float) for x in tree)
    if floor is None or at_or_above(y[None], floor, weights, sense)[0]:
        return c, y, "nested tree"
    return choose(candidates)


# Where nested looks between the tree's final model and TA when the tree is below the TA
# floor: the tree keeps the worst task above TA's and TA the mean above the tree's, so a mix
# can clear both (bench/many_tasks.py: on the first four demo tasks a mix is handed over in
# 3 of 3 seeds, where TA itself was before; bench/nested_demo.py measures the segment).
SEGMENT_STEPS = (0.25, 0.5, 0.75)


def segment_to(tree: np.ndarray, other: np.ndarray,
               steps: Sequence[float] = SEGMENT_STEPS) -> np.ndarray:
    """[len(steps), T] merges (1 - s) tree + s other, one row per step s."""
    tree, other = (np.asarray(x, dtype=float) for x in (tree, other))
    s = np.asarray(steps, dtype=float)[:, None]
    return (1.0 - s) * tree[None] + s * other[None]


def pair_design(
    n_points: int = 20,
    n_diagonal: int | None = None,
    seed: int = 0,
    low: float = 0.0,
    high: float = 1.0,
) -> np.ndarray:
    """(n_points, 2) design for one pair; by default a quarter of it near the diagonal.

    Near-diagonal points (c1 ≈ c2) are where plain task arithmetic lives, so the
    surrogate should be accurate there.
    """
    if n_diagonal is None:
        n_diagonal = n_points // 4
    return design(2, n_points, low=low, high=high, n_diagonal=n_diagonal, seed=seed)


# ------------------------------------------------------------------------ rounds


def _leaf_pool(tasks: list[str], accuracy: dict[str, float]) -> list[PoolModel]:
    eye = np.eye(len(tasks))
    return [
        PoolModel(name=t, tasks=(t,), coefficients=eye[i], accuracy=accuracy[t],
                  measured={t: accuracy[t]})
        for i, t in enumerate(tasks)
    ]


def _merged_model(
    left: PoolModel, right: PoolModel, c: np.ndarray, measured: dict[str, float],
    round_idx: int, order: dict[str, int], preference: Mapping[str, float],
) -> PoolModel:
    tasks = tuple(sorted(left.tasks + right.tasks, key=order.__getitem__))
    return PoolModel(
        name=f"merge{round_idx + 1}",
        tasks=tasks,
        coefficients=compose_coefficients(left.coefficients, right.coefficients, c),
        accuracy=preference_mean(measured, tasks, preference),
        measured={t: float(measured[t]) for t in tasks},
        children=(left.name, right.name),
        round=round_idx,
    )


def _record(
    round_idx: int, left: PoolModel, right: PoolModel, merged: PoolModel,
    c: np.ndarray, preference: Mapping[str, float], info: dict,
) -> dict:
    return jsonable({
        "round": round_idx,
        "left": left.name,
        "right": right.name,
        "left_tasks": left.tasks,
        "right_tasks": right.tasks,
        "left_coefficients": left.coefficients,
        "right_coefficients": right.coefficients,
        "left_preference": model_preference(left, preference),
        "right_preference": model_preference(right, preference),
        "pair_coefficients": c,
        "merged": merged.name,
        "tasks": merged.tasks,
        "coefficients": merged.coefficients,
        "measured": merged.measured,
        "pairing_accuracy": {"left": left.accuracy, "right": right.accuracy,
                             "merged": merged.accuracy},
        "info": info,
    })


def _check_pair_coefficients(c: Any, round_idx: int) -> np.ndarray:
    c = np.asarray(c, dtype=float)
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise ValueError(f"round {round_idx}: pair coefficients must be 2 finite numbers, got {c!r}")
    return c


def _check_measured(measured: Any, tasks: Sequence[str], round_idx: int) -> dict[str, float]:
    if not isinstance(measured, Mapping):
        raise ValueError(f"round {round_idx}: measure must return a mapping, got {type(measured).__name__}")
    missing = [t for t in tasks if t not in measured]
    if missing:
        raise ValueError(f"round {round_idx}: measure returned no accuracy for {missing}")
    try:
        return {t: float(measured[t]) for t in tasks}
    except (TypeError, ValueError):
        raise ValueError(f"round {round_idx}: accuracies must be numbers, got {dict(measured)!r}") from None


def _replay(
    record: Mapping, round_idx: int, left: PoolModel, right: PoolModel,
) -> tuple[np.ndarray, dict[str, float], dict]:
    """Pair coefficients, measurements and info of a stored round, after checking that
    it is the round this run would do now (same pair, same tasks, same tree)."""
    try:
        stored_round, names = record["round"], (record["left"], record["right"])
        c, measured = record["pair_coefficients"], record["measured"]
    except (KeyError, TypeError) as exc:
        raise MAPError(f"stored round {round_idx} is not a complete round record (missing {exc})") from None
    if stored_round != round_idx:
        raise MAPError(f"stored rounds are out of order: expected round {round_idx}, found {stored_round!r}")
    if tuple(names) != (left.name, right.name):
        raise MAPError(
            f"stored round {round_idx} merged {names[0]} + {names[1]} but this run pairs "
            f"{left.name} + {right.name} (tasks, accuracies or preferences changed); "
            "use a fresh results directory"
        )
    try:
        c = _check_pair_coefficients(c, round_idx)
        measured = _check_measured(measured, left.tasks + right.tasks, round_idx)
    except ValueError as exc:
        raise MAPError(f"stored {exc}") from None
    stored = record.get("coefficients")
    if stored is not None:
        composed = compose_coefficients(left.coefficients, right.coefficients, c)
        if np.shape(stored) != composed.shape or not np.allclose(stored, composed):
            raise MAPError(
                f"stored round {round_idx}: composed coefficients {list(stored)} do not match "
                f"{composed.tolist()} rebuilt from the tree; use a fresh results directory"
            )
    return c, measured, dict(record.get("info", {}))


def level_pairs(pool: Sequence[PoolModel]) -> list[tuple[int, int]]:
    """Disjoint pairs of one level: the closest pair (pair_closest), then the closest of
    the rest, and so on; with an odd pool one model waits for the next level."""
    left = list(range(len(pool)))
    pairs = []
    while len(left) > 1:
        i, j = pair_closest([pool[k] for k in left])
        pairs.append((left[i], left[j]))
        left = [k for n, k in enumerate(left) if n not in (i, j)]
    return pairs


PairJob = tuple[PoolModel, PoolModel, int]  # (left, right, round index)


def run_nested(
    tasks: list[str],
    single_accuracy: dict[str, float],
    preference: dict[str, float],
    run_pair: Callable[[PoolModel, PoolModel, int], tuple[np.ndarray, dict]] | None = None,
    measure: Callable[[np.ndarray, tuple[str, ...]], dict[str, float]] | None = None,
    on_round: Callable[[dict], None] | None = None,
    completed_rounds: list[dict] | None = None,
    *,
    run_level: Callable[[list[PairJob]], list[tuple[np.ndarray, dict]]] | None = None,
    measure_level: Callable[[list[tuple[np.ndarray, tuple[str, ...]]]],
                            list[dict[str, float]]] | None = None,
) -> NestedResult:
    """Merge `tasks` pairwise, level by level, until one model holds them all.

    At each level the pool is split into disjoint pairs of similar accuracy (level_pairs);
    every pair of the level is a round (numbered on across levels, closest pair first),
    its merge joins the next level's pool after the models left unpaired.

    run_level(pairs) -> [(pair coefficients (2,), info dict)] for all of a level's pairs
        at once (so their designs can be evaluated together); or run_pair(model_a,
        model_b, round_idx) -> (c, info), one pair at a time. Each runs MAP on a pair and
        picks a point (the pair's preference is pair_preference(model_a, model_b, ...)).
    measure_level([(coefficients (T,), tasks)]) -> [{task: accuracy}] of the level's
        merged models at once; or measure(coefficients, tasks) -> {task: accuracy}.
    on_round(record) is called after each newly computed round (not for replayed ones).
    completed_rounds: records of an earlier run, replayed without calling run_pair or
    measure; they must be the rounds this run would do (else MAPError).
    """
    if run_level is None:
        if run_pair is None:
            raise TypeError("run_nested needs run_pair or run_level")
        run_level = lambda pairs: [run_pair(a, b, r) for a, b, r in pairs]  # noqa: E731
    if measure_level is None:
        if measure is None:
            raise TypeError("run_nested needs measure or measure_level")
        measure_level = lambda items: [measure(c, t) for c, t in items]  # noqa: E731
    weights = validate_preference(preference, tasks)
    tasks = list(tasks)
    accuracy = _validate_accuracies(single_accuracy, tasks)
    completed = list(completed_rounds or [])
    if len(completed) > len(tasks) - 1:
        raise MAPError(
            f"{len(completed)} stored rounds, but {len(tasks)} tasks need only {len(tasks) - 1}"
        )
    order = {t: i for i, t in enumerate(tasks)}

    pool = _leaf_pool(tasks, accuracy)
    models = {m.name: m for m in pool}
    records: list[dict] = []
    history: list[list[str]] = []
    round_idx = level = 0
    while len(pool) > 1:
        history.append([m.name for m in pool])
        pairs = level_pairs(pool)
        rounds = list(range(round_idx, round_idx + len(pairs)))
        chosen: dict[int, tuple[np.ndarray, dict[str, float] | None, dict]] = {}
        for (i, j), r in zip(pairs, rounds):
            if r < len(completed):
                chosen[r] = _replay(completed[r], r, pool[i], pool[j])
        todo = [(pool[i], pool[j], r) for (i, j), r in zip(pairs, rounds) if r not in chosen]
        if todo:
            fitted = run_level(todo)
            composed = []
            for (left, right, r), (c_raw, info) in zip(todo, fitted):
                c = _check_pair_coefficients(c_raw, r)
                chosen[r] = (c, None, info)
                composed.append((compose_coefficients(left.coefficients, right.coefficients, c),
                                 left.tasks + right.tasks))
            for (left, right, r), measured, (_, pair_tasks) in zip(
                    todo, measure_level(composed), composed):
                chosen[r] = (chosen[r][0], _check_measured(measured, pair_tasks, r), chosen[r][2])
        merged_level = []
        for (i, j), r in zip(pairs, rounds):
            left, right = pool[i], pool[j]
            c, measured, info = chosen[r]
            merged = _merged_model(left, right, c, measured, r, order, weights)
            record = _record(r, left, right, merged, c, weights, info or {})
            record["level"] = level
            records.append(record)
            if r >= len(completed) and on_round is not None:
                on_round(record)
            models[merged.name] = merged
            merged_level.append(merged)
        paired = {k for pair in pairs for k in pair}
        pool = [m for k, m in enumerate(pool) if k not in paired] + merged_level
        round_idx += len(pairs)
        level += 1
    history.append([m.name for m in pool])
    return NestedResult(final=pool[0], records=records, models=models, pool_history=history)
