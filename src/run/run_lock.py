"""One run per run directory: a lock that a killed run leaves to be taken over."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from map_common.errors import MAPError
from map_common.files import remove_stale_temporaries
from src.run.fingerprint import FINGERPRINT

LOCK = ".lock"
BOOKKEEPING = {LOCK, FINGERPRINT}


def _file_in_the_way(path: Path) -> Path | None:
    """The first existing non-folder on the way to ``path`` (a file given as a folder)."""
    for part in reversed([path, *path.parents]):
        if part.exists() and not part.is_dir():
            return part
    return None


def make_folder(path: str | os.PathLike, what: str) -> Path:
    """mkdir -p, with one line (MAPError) when a file is in the way or it is not allowed."""
    path = Path(path)
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise MAPError(f"{what} {path}: {blocker} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MAPError(f"cannot create {what} {path}: {exc.strerror}") from None
    return path


class RunLock:
    """One run per run directory: an exclusive ``flock`` on ``<run dir>/.lock``.

    The lock file holds the owner's pid and hostname (for the refusal message). The kernel
    drops the lock when its process dies, so a lock left by a killed run is simply taken
    over. Taking it also removes the ``.<name>.XXXX.tmp`` files a killed write left behind.
    If the run fails before storing anything, the directory it created is removed again.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path / LOCK
        self._fd: int | None = None
        self._created: list[Path] = []  # folders this run made, innermost first

    def acquire(self) -> "RunLock":
        self._created = [p for p in [self.path, *self.path.parents] if not p.exists()]
        make_folder(self.path, "run directory")
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise MAPError(f"run dir {self.path} is in use by {self.owner()}; wait for it "
                               "to finish or use another --exp-id") from None
            # A cleanup may have unlinked the file between our open and flock: lock anew.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd
        for folder in [self.path, *(p for p in self.path.rglob("*") if p.is_dir())]:
            remove_stale_temporaries(folder)
        return self

    def owner(self) -> str:
        try:
            info = json.loads(self.lock_path.read_text())
            return f"process {info['pid']} on {info['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def release(self, *, failed: bool = False) -> None:
        if self._fd is None:
            return
        if failed and self._created and \
                {p.name for p in self.path.iterdir()} <= BOOKKEEPING:
            for name in BOOKKEEPING:  # nothing was stored: leave no trace of this run
                (self.path / name).unlink(missing_ok=True)
            for folder in self._created:
                try:
                    folder.rmdir()
                except OSError:
                    break
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release(failed=exc_type is not None)
