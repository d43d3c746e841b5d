"""Plain JSON types from numpy values: what every JSON file of a run is written through."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """numpy arrays/scalars, tuples and paths -> plain JSON types, recursively."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
