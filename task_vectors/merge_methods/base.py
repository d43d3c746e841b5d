"""What a merge method is: a typed, frozen, picklable settings object.

The same object travels from the command line to the fingerprint, run.json, the figure
labels and the engines (local or on Ray workers); nothing renames its settings on the way.

Two kinds:

* ``"data-free"``: a transform of the ``[T, P]`` task-vector matrix, applied once when an
  engine loads (``tau_transform()``: an in-place callable on tau, or None for none). The
  MAP search then runs on theta(c) = theta_pre + sum_i c_i tau'_i.
* ``"learned"``: a method that learns from data through the engine's forward pass
  (AdaMerging's layer-wise profiles). It implements ``LearnedMerge``: ``learn(engine,
  datasets, folder)`` on an engine of the task vectors as fine-tuned returns the same
  object with what it learned in it, whose ``tau_transform`` then applies it (a Ray worker
  gets that object, so the same tau). The run learns it once, before any evaluation
  (``src.run.evaluation.open_evaluator``), its state kept in the run directory (the files
  named by ``files``). It is registered like any other method.

A setting is a dataclass field made with ``setting(...)``: its flag, the flag's range and
help. ``args.py`` adds one flag per distinct setting flag; ``from_flags`` reads them back.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

# An in-place transform of the [T, P] torch tensor tau (torch is imported by the methods'
# functions only, so the registry can be read before torch is loaded).
TauTransform = Callable[[Any], Any]


def setting(default: Any, *, flag: str, help: str, type: type = float,
            low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False, record: str | None = None) -> Any:
    """A method's setting: a dataclass field whose metadata says its command-line flag, the
    value type (float or int) and range the flag accepts, its help, and the key it is
    recorded under (default: the flag's dest; the fingerprint names a changed setting by
    that key as a flag)."""
    dest = flag.lstrip("-").replace("-", "_")
    return dataclasses.field(default=default, metadata={
        "flag": flag, "dest": dest, "help": help, "type": type, "low": low, "high": high,
        "low_open": low_open, "high_open": high_open, "record": record or dest})


@dataclass(frozen=True)
class MergeMethod:
    """Base of every merge method. Subclasses: frozen dataclasses, fields from ``setting``."""

    name: ClassVar[str]        # the --merge-method value
    label: ClassVar[str]       # the figures' legend: "MAP (<label>)"
    help: ClassVar[str]        # one phrase for --merge-method's help
    kind: ClassVar[str] = "data-free"

    def tau_transform(self) -> TauTransform | None:
        """The in-place tau preprocessing (None: the task vectors as fine-tuned)."""
        return None

    @classmethod
    def settings(cls) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)

    @classmethod
    def from_flags(cls, values: Mapping[str, Any]) -> "MergeMethod":
        """The method with its settings read from parsed flags (by dest name)."""
        return cls(**{f.name: values[f.metadata["dest"]] for f in cls.settings()})

    def record(self) -> dict[str, Any]:
        """What the fingerprint and run.json record: the name, then each setting."""
        return {"merge_method": self.name,
                **{f.metadata["record"]: getattr(self, f.name) for f in self.settings()}}

    def describe(self) -> dict[str, Any]:
        """run.json's record of the method as the engines applied it (a learned method adds
        what it learned)."""
        return self.record()


@runtime_checkable
class LearnedMerge(Protocol):
    """A ``kind == "learned"`` method: learned through the engine's forward pass on the
    run's data (the engine and datasets are the run's; ``folder`` keeps its state, named in
    ``files``, so a resumed run does not learn again). Returns the method with what it
    learned, ready for ``tau_transform``."""

    kind: str
    files: Mapping[str, str]

    def learn(self, engine: Any, datasets: Sequence[str], folder: Any) -> "MergeMethod":
        ...


class Registry(dict):
    """{name: method class}, built from a list (mergekit style); ``register`` adds one."""

    def __init__(self, methods: Sequence[type[MergeMethod]] = ()) -> None:
        super().__init__()
        for method in methods:
            self.register(method)

    def register(self, method: type[MergeMethod]) -> type[MergeMethod]:
        if method.name in self and self[method.name] is not method:
            raise ValueError(f"merge method {method.name!r} is registered twice")
        self[method.name] = method
        return method

    def flags(self) -> list[dataclasses.Field]:
        """Each distinct setting flag once, in registration order."""
        seen: dict[str, dataclasses.Field] = {}
        for method in self.values():
            for f in method.settings():
                seen.setdefault(f.metadata["flag"], f)
        return list(seen.values())
