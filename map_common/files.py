"""Atomic file writes: a killed job never leaves half a file under the final name."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

PathLike = str | os.PathLike


def process_umask() -> int:
    """The process umask, read without changing it (os.umask can only read by setting,
    which would leave a window where files are created world-writable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: fall back to the read-by-setting dance, once
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    The file gets the permissions an ordinary ``open`` would give (mkstemp makes 0600, but
    results and checkpoints are meant to be shared)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~process_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Delete the ``.<name>.XXXX.tmp`` files a killed write left in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
