"""Coefficient designs for merging T task vectors, and hyperspherical maps of the positive orthant.

Every design returns a float array shaped (n, T): one row per merging coefficient vector c.
Random parts are seeded so that a run directory can be resumed with the same points.
"""

from __future__ import annotations

import numpy as np

_TOL = 1e-9
# Largest full grid we are willing to build while looking for enough candidates.
_MAX_GRID_ROWS = 2_000_000


def min_points(T: int) -> int:
    """Parameters of a full quadratic in T variables: 1 + T + T(T+1)/2 = (T+1)(T+2)/2."""
    _check_positive_int(T, "T (number of tasks)")
    return (T + 1) * (T + 2) // 2


def one_hot_points(T: int) -> np.ndarray:
    """The T single-task models e_i, shape (T, T)."""
    _check_positive_int(T, "T (number of tasks)")
    return np.eye(T, dtype=float)


def grid_points(T: int, per_axis: int, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Full grid of the box [low, high]^T minus one-hot, diagonal and sum-to-one points.

    Those three families are excluded because the design adds one-hot and diagonal points
    itself, and points on the simplex sum(c) = 1 are plain weighted averages, which the
    grid is meant to complement.
    """
    _check_positive_int(T, "T (number of tasks)")
    _check_positive_int(per_axis, "per_axis")
    _check_box(low, high)
    if per_axis ** T > _MAX_GRID_ROWS:
        raise ValueError(
            f"grid with per_axis={per_axis} and T={T} has {per_axis ** T} rows; "
            f"expected at most {_MAX_GRID_ROWS} (use fewer points or fewer tasks)"
        )
    grid = full_grid(T, per_axis, low, high)
    keep = ~(_is_one_hot(grid) | _is_diagonal(grid) | (np.abs(grid.sum(axis=1) - 1.0) < _TOL))
    return grid[keep]


def full_grid(T: int, per_axis: int, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Every point of the regular grid with ``per_axis`` values per coefficient, (per_axis**T, T),
    in lexicographic order: the ground truth a grid search evaluates."""
    _check_positive_int(T, "T (number of tasks)")
    _check_positive_int(per_axis, "per_axis")
    _check_box(low, high)
    axis = np.linspace(low, high, per_axis)
    return np.stack(np.meshgrid(*([axis] * T), indexing="ij"), axis=-1).reshape(-1, T)


def diagonal_points(
    T: int,
    n: int,
    low: float = 0.0,
    high: float = 1.0,
    jitter: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Isotropic points c = s * 1 with s evenly spaced in (low, high], optionally jittered."""
    _check_positive_int(T, "T (number of tasks)")
    _check_nonnegative_int(n, "n (number of diagonal points)")
    _check_box(low, high)
    if jitter < 0:
        raise ValueError(f"jitter={jitter} is negative; expected a standard deviation >= 0")
    s = low + (high - low) * np.arange(1, n + 1) / max(n, 1)
    points = np.repeat(s[:, None], T, axis=1)
    if jitter > 0:
        rng = np.random.default_rng(0) if rng is None else rng
        points = points + rng.normal(0.0, jitter, size=points.shape)
    return np.clip(points, low, high)


def disturbed_points(
    base: np.ndarray,
    n: int,
    scale: float,
    low: float,
    high: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """n random rows of base plus gaussian noise of std `scale`, clipped to the box."""
    base = np.atleast_2d(np.asarray(base, dtype=float))
    _check_nonnegative_int(n, "n (number of disturbed points)")
    _check_box(low, high)
    if scale < 0:
        raise ValueError(f"scale={scale} is negative; expected a standard deviation >= 0")
    if n > 0 and base.shape[0] == 0:
        raise ValueError("disturbed_points got an empty base; expected at least one row to disturb")
    picks = rng.integers(0, base.shape[0], size=n)
    noise = rng.normal(0.0, scale, size=(n, base.shape[1]))
    return np.clip(base[picks] + noise, low, high)


def design(
    T: int,
    n_points: int,
    *,
    low: float = 0.0,
    high: float = 1.0,
    n_diagonal: int = 0,
    n_disturbed: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Exactly n_points distinct rows: one-hot, near-diagonal, disturbed, then grid points.

    The grid part uses the coarsest grid (per_axis from 3 upward) with enough candidates,
    sampled without replacement, so small designs stay spread over the whole box.
    """
    _check_positive_int(T, "T (number of tasks)")
    _check_positive_int(n_points, "n_points")
    _check_nonnegative_int(n_diagonal, "n_diagonal")
    _check_nonnegative_int(n_disturbed, "n_disturbed")
    _check_box(low, high)
    if n_points < T:
        raise ValueError(f"n_points={n_points} is fewer than T={T}; expected at least one point per task")
    if T + n_diagonal + n_disturbed > n_points:
        raise ValueError(
            f"n_points={n_points} cannot hold T={T} one-hot + n_diagonal={n_diagonal} "
            f"+ n_disturbed={n_disturbed} points"
        )
    rng = np.random.default_rng(seed)
    # Exact e_i are the fine-tuned models themselves; outside the box scale them to its top.
    one_hot = one_hot_points(T) if low <= 1.0 <= high else one_hot_points(T) * high
    rows = one_hot
    jitter, scale = 0.02 * (high - low), 0.1 * (high - low)
    if n_diagonal:
        diag = diagonal_points(T, n_diagonal, low, high, jitter=jitter, rng=rng)
        rows = _append_distinct(rows, diag, lambda: np.clip(
            rng.uniform(low, high) + rng.normal(0.0, jitter, T), low, high))
    if n_disturbed:
        # Disturb the one-hot and diagonal anchors: probes the neighbourhood of known models.
        base = rows.copy()
        dist = disturbed_points(base, n_disturbed, scale, low, high, rng)
        rows = _append_distinct(rows, dist, lambda: disturbed_points(
            base, 1, scale, low, high, rng)[0])
    rest = n_points - rows.shape[0]
    if rest > 0:
        rows = np.vstack([rows, _fill_from_grid(rows, rest, T, low, high, rng)])
    return rows


def lhs_design(T: int, n: int, low: float, high: float, seed: int) -> np.ndarray:
    """n points: the T one-hot models, the centre of the box, then a Latin hypercube
    (interior points rather than a coarse grid's edges and corners)."""
    from scipy.stats import qmc  # scipy is imported only by the designs that need it

    one_hot = np.clip(np.eye(T), low, high)
    fixed = np.vstack([one_hot, np.full((1, T), (low + high) / 2)])[:n]
    rest = qmc.LatinHypercube(d=T, seed=seed).random(n - len(fixed))
    return np.vstack([fixed, low + (high - low) * rest])


def to_hyperspherical(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radius (n,) and angles (n, T-1) in [0, pi/2] of points in the positive orthant.

    Convention: c_1 = r cos p1, c_2 = r sin p1 cos p2, ..., c_T = r sin p1 ... sin p_{T-1}.
    Where the tail is zero the angle is 0 (atan2(0, 0) = 0), so the origin maps to r=0, angles 0.
    """
    C = _as_2d(C, "C")
    if np.any(C < -_TOL):
        raise ValueError(
            f"to_hyperspherical got a negative coefficient ({C.min():.3g}); "
            "expected points in the positive orthant"
        )
    C = np.clip(C, 0.0, None)
    r = np.linalg.norm(C, axis=1)
    # tail[:, k] = ||c_{k+1..T}||: reverse cumulative sum of squares.
    tail = np.sqrt(np.cumsum(C[:, ::-1] ** 2, axis=1)[:, ::-1])
    angles = np.arctan2(tail[:, 1:], C[:, :-1])
    return r, angles


def from_hyperspherical(r: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Inverse of to_hyperspherical: points (n, T) from radius (n,) and angles (n, T-1)."""
    r = np.atleast_1d(np.asarray(r, dtype=float))
    angles = np.asarray(angles, dtype=float)
    if angles.ndim == 1:
        angles = angles[None, :] if r.shape[0] == 1 else angles[:, None]
    if r.ndim != 1 or angles.ndim != 2 or angles.shape[0] != r.shape[0]:
        raise ValueError(
            f"from_hyperspherical got r of shape {r.shape} and angles of shape {angles.shape}; "
            "expected (n,) and (n, T-1)"
        )
    if np.any(r < -_TOL):
        raise ValueError(f"from_hyperspherical got a negative radius ({r.min():.3g}); expected r >= 0")
    if np.any(angles < -_TOL) or np.any(angles > np.pi / 2 + _TOL):
        raise ValueError(
            f"from_hyperspherical got angles in [{angles.min():.3g}, {angles.max():.3g}]; "
            "expected angles in [0, pi/2]"
        )
    angles = np.clip(angles, 0.0, np.pi / 2)
    n = r.shape[0]
    sin_prod = np.hstack([np.ones((n, 1)), np.cumprod(np.sin(angles), axis=1)])
    cos_part = np.hstack([np.cos(angles), np.ones((n, 1))])
    # cos(pi/2) is ~6e-17, not 0; clip so edge points stay exactly on the orthant.
    return np.clip(r[:, None] * sin_prod * cos_part, 0.0, None)


# ---------------------------------------------------------------- helpers


def _fill_from_grid(
    existing: np.ndarray, n: int, T: int, low: float, high: float, rng: np.random.Generator
) -> np.ndarray:
    if T == 1:
        # A 1-D grid is all "diagonal"; spread the rest evenly over the interval instead.
        per_axis = n + existing.shape[0] + 1
        while True:
            cand = np.linspace(low, high, per_axis)[:, None]
            cand = cand[~_matches_any(cand, existing)]
            if cand.shape[0] >= n:
                return cand[np.sort(rng.choice(cand.shape[0], n, replace=False))]
            per_axis += n
    per_axis = 3
    while True:
        cand = grid_points(T, per_axis, low, high)
        cand = cand[~_matches_any(cand, existing)]
        if cand.shape[0] >= n:
            return cand[rng.choice(cand.shape[0], n, replace=False)]
        per_axis += 1


def _append_distinct(rows: np.ndarray, new: np.ndarray, redraw) -> np.ndarray:
    """Append the rows of `new`, replacing by `redraw()` any that duplicate a kept row.

    Clipping to the box can map noisy points back onto an anchor exactly, hence the redraw.
    """
    for row in new:
        for _ in range(1000):
            if not _matches_any(row[None, :], rows)[0]:
                break
            row = redraw()
        else:
            raise ValueError("could not draw distinct random points; widen the box [low, high]")
        rows = np.vstack([rows, row])
    return rows


def _matches_any(points: np.ndarray, existing: np.ndarray) -> np.ndarray:
    if existing.shape[0] == 0 or points.shape[0] == 0:
        return np.zeros(points.shape[0], dtype=bool)
    dist = np.abs(points[:, None, :] - existing[None, :, :]).max(axis=2)
    return (dist < _TOL).any(axis=1)


def _is_one_hot(X: np.ndarray) -> np.ndarray:
    near_one = np.abs(X - 1.0) < _TOL
    near_zero = np.abs(X) < _TOL
    return (near_one.sum(axis=1) == 1) & ((near_one | near_zero).all(axis=1))


def _is_diagonal(X: np.ndarray) -> np.ndarray:
    return (X.max(axis=1) - X.min(axis=1)) < _TOL


def _as_2d(C: np.ndarray, name: str) -> np.ndarray:
    C = np.asarray(C, dtype=float)
    if C.ndim == 1:
        C = C[None, :]
    if C.ndim != 2 or C.shape[1] < 1:
        raise ValueError(f"{name} has shape {C.shape}; expected (n, T) with T >= 1")
    return C


def _check_positive_int(value: int, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}={value!r}; expected a positive integer")


def _check_nonnegative_int(value: int, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}={value!r}; expected a non-negative integer")


def _check_box(low: float, high: float) -> None:
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        raise ValueError(f"coefficient box [low={low}, high={high}] is empty; expected low < high")
