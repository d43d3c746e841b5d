"""The import rule between the packages and the roles of src/, read from the source (every
import, also those inside functions)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# package (or module) -> the first-party names (and torch) it must never import
FORBIDDEN = {
    "map_common": ["src", "task_vectors", "args", "run_MAP"],
    "task_vectors": ["src", "args", "run_MAP"],
    "src": ["args", "run_MAP"],
    # the algorithms: arrays in, arrays out; numpy, scikit-learn, pymoo and each other
    "src.core": ["src", "task_vectors", "torch", "args", "run_MAP"],
    # the figures: matplotlib over arrays
    "src.plotting": ["src", "task_vectors", "torch", "args", "run_MAP"],
    # a run's configuration, evaluator, directory and writers: never the modes above them
    "src.run": ["src.modes", "args", "run_MAP"],
}
# exceptions to FORBIDDEN, by prefix
ALLOWED = {"src.core": ["src.core"], "src.plotting": ["src.plotting"]}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(name: str, imported: set[str]) -> list[str]:
    out = []
    for owner, forbidden in FORBIDDEN.items():
        if not _under(name, owner):
            continue
        allowed = ALLOWED.get(owner, [])
        for target in sorted(imported):
            if any(_under(target, f) for f in forbidden) and \
                    not any(_under(target, a) for a in allowed) and target != name:
                # "from src import sampling" names the package src as well as src.core.sampling
                if any(t != target and _under(t, target) and any(_under(t, a) for a in allowed)
                       for t in imported):
                    continue
                out.append(f"{name} imports {target} ({owner} must not)")
    return out


SOURCES = sorted(p for package in ("src", "task_vectors", "map_common")
                 for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_the_import_rule(path):
    name = module_name(path)
    assert violations(name, imports(path)) == []


def test_the_rule_catches_a_breach():
    assert violations("task_vectors.engine", {"src.run.config"}) == [
        "task_vectors.engine imports src.run.config (task_vectors must not)"]
    assert violations("src.core.pareto", {"torch", "src.core.objectives"}) == [
        "src.core.pareto imports torch (src.core must not)"]
    assert violations("src.core.front", {"src.run.outputs"}) == [
        "src.core.front imports src.run.outputs (src.core must not)"]
    assert violations("src.run.config", {"src.modes.common", "src.core.sampling"}) == [
        "src.run.config imports src.modes.common (src.run must not)"]
