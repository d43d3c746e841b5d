"""The run directory's fingerprint: everything that decides the value of an evaluation.

A resume with another fingerprint would mix values of different meanings in one file
(say 20-image accuracies reported as the full set's), so it is refused with one line
naming what changed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from map_common.errors import MAPError
from src.run.results import jsonable, read_json, write_json

FINGERPRINT = "fingerprint.json"
# How each fingerprint entry is named to the user; settings are named by their flag.
_LABELS = {"model": "--model", "datasets": "eval datasets", "data_location": "--data-location",
           "max_eval_samples": "--max-eval-samples", "zoo_recipe": "demo zoo recipe"}


SAMPLE_BLOCKS, SAMPLE_BYTES = 16, 1 << 16  # 1 MiB read per file, whatever its size


def content_sample(path: str | os.PathLike, size: int) -> str:
    """sha256 of SAMPLE_BLOCKS blocks spread evenly over the file (the whole file when it
    is smaller). A checkpoint replaced by another of the same size (another fine-tuning
    run, copied with its mtime kept: ``cp -p``, ``rsync -a``) differs in every block, so
    this notices it while reading 1 MiB instead of gigabytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= SAMPLE_BLOCKS * SAMPLE_BYTES:
            digest.update(f.read())
        else:
            step = (size - SAMPLE_BYTES) / (SAMPLE_BLOCKS - 1)
            for k in range(SAMPLE_BLOCKS):
                f.seek(int(k * step))
                digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()


def file_stamp(path: str | os.PathLike) -> dict[str, Any] | None:
    """Size, mtime and a sampled content digest of a file, or of every file in a folder
    (None if absent): enough to notice a checkpoint replaced on disk without reading
    gigabytes."""
    path = Path(path)
    if path.is_dir():
        return {str(p.relative_to(path)): file_stamp(p) for p in sorted(path.rglob("*"))
                if p.is_file()}
    try:
        st = path.stat()
        sample = content_sample(path, st.st_size)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sample_sha256": sample}


def _same_stamp(before: Any, now: Any) -> bool:
    """Stamps agree on every key both have: a fingerprint written before the content digest
    existed is compared on size and mtime only, so its run still resumes."""
    if isinstance(before, dict) and isinstance(now, dict):
        if "size" in before and "size" in now:
            return all(before[k] == now[k] for k in before.keys() & now.keys())
        return before.keys() == now.keys() and all(_same_stamp(before[k], now[k])
                                                   for k in before)
    return before == now


def evaluation_fingerprint(model_name: str, *, checkpoints: Mapping[str, str | os.PathLike],
                           datasets: Sequence[str], data_location: str,
                           max_eval_samples: int | None,
                           settings: Mapping[str, Any] | None = None,
                           zoo_recipe: str | None = None) -> dict[str, Any]:
    """Everything that decides the value of an evaluation (pure but for file stamps).

    ``checkpoints``: {what: path} (e.g. "pretrained checkpoint", "fine-tuned checkpoint of
    LetterVal", "head of LetterVal"); a folder stands for its files. ``settings``: any other
    evaluation setting by its flag's dest name (precision, merge_method and its
    hyperparameters); new ones join without code changes. The batch size and the number of
    workers are left out: they do not change the values.
    """
    files = {what: {"path": str(path), "stamp": file_stamp(path)}
             for what, path in checkpoints.items()}
    if model_name.startswith("local-dir:"):  # the architecture lives in a folder of files
        folder = model_name[len("local-dir:"):]
        files["model folder"] = {"path": folder, "stamp": file_stamp(folder)}
    return jsonable({"model": model_name, "files": files, "datasets": list(datasets),
                     "data_location": str(data_location), "max_eval_samples": max_eval_samples,
                     "settings": dict(settings or {}), "zoo_recipe": zoo_recipe})


def _describe(value: Any) -> str:
    if value is None or value == {}:
        return "none"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def _stamp_text(entry: Mapping | None) -> str:
    stamp = (entry or {}).get("stamp")
    if stamp is None:
        return "absent"
    if "size" in stamp and "mtime_ns" in stamp:
        from datetime import datetime, timezone

        when = datetime.fromtimestamp(stamp["mtime_ns"] / 1e9, timezone.utc)
        sample = f", content {stamp['sample_sha256'][:12]}" if "sample_sha256" in stamp else ""
        return f"{stamp['size']} bytes, modified {when:%Y-%m-%d %H:%M:%S} UTC{sample}"
    return f"{len(stamp)} files"


def fingerprint_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs, each as 'was made with X, this run has Y'. A file absent from the old
    fingerprint and present now is no change: the earlier run built and cached it (a
    zero-shot head)."""
    changes = []
    for key in sorted(set(old) | set(new)):
        if key in ("files", "settings"):
            continue
        if old.get(key) != new.get(key):
            label = _LABELS.get(key, key)
            changes.append(f"{label} {_describe(old.get(key))}, this run has "
                           f"{_describe(new.get(key))}")
    old_set, new_set = old.get("settings", {}), new.get("settings", {})
    for key in sorted(set(old_set) | set(new_set)):
        if old_set.get(key) != new_set.get(key):
            flag = "--" + key.replace("_", "-")
            changes.append(f"{flag} {_describe(old_set.get(key))}, this run has "
                           f"{_describe(new_set.get(key))}")
    old_files, new_files = old.get("files", {}), new.get("files", {})
    for what in sorted(set(old_files) | set(new_files)):
        before, now = old_files.get(what), new_files.get(what)
        if (before or {}).get("stamp") is None and now is not None and \
                (before is None or before.get("path") == now.get("path")):
            continue  # created by the earlier run
        if before is None or now is None or before.get("path") != now.get("path") or \
                not _same_stamp(before.get("stamp"), now.get("stamp")):
            path = (now or before or {}).get("path", "?")
            changes.append(f"the {what} {path} as {_stamp_text(before)}, this run finds "
                           f"{_stamp_text(now)}")
    return changes


def check_fingerprint(run_path: str | os.PathLike, fp: Mapping[str, Any]) -> None:
    """Refuse to resume a run directory made with other evaluation settings (MAPError naming
    the first change, nothing written); record ``fp`` when the directory has none yet."""
    run_path = Path(run_path)
    stored = read_json(run_path / FINGERPRINT)
    fp = jsonable(fp)
    if stored is not None and not isinstance(stored, dict):
        raise MAPError(f"{run_path / FINGERPRINT}: not a fingerprint (expected an object); "
                       "move it away to start afresh")
    if stored is None:
        write_json(run_path / FINGERPRINT, fp)
        return
    changes = fingerprint_changes(stored, fp)
    if changes:
        more = f" (and {len(changes) - 1} more change(s))" if len(changes) > 1 else ""
        raise MAPError(f"run dir {run_path} was made with {changes[0]}{more}; use another "
                       f"--exp-id or delete {run_path} to start afresh")
    if stored != fp:  # files the earlier run created (cached heads): remember them now
        write_json(run_path / FINGERPRINT, fp)


def record_fingerprint(run_path: str | os.PathLike, fp: Mapping[str, Any]) -> None:
    """Store ``fp`` as the run's fingerprint (after check_fingerprint passed and the heads
    are settled: a cached head built for another model is rebuilt by the run, and the
    rebuilt file is what its evaluations used)."""
    path = Path(run_path) / FINGERPRINT
    fp = jsonable(fp)
    if read_json(path) != fp:
        write_json(path, fp)
