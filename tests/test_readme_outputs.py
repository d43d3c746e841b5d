"""The README's commands leave nothing for git to pick up, and it states the defaults as
the parser resolves them."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path],
                          cwd=REPO).returncode == 0


def test_every_results_path_of_the_readme_and_the_default_are_ignored():
    from args import build_parser

    readme = (REPO / "README.md").read_text()
    paths = set(re.findall(r"--results-path\s+([\w./-]+)", readme))
    paths.add(build_parser().get_default("results_path"))
    relative = {p for p in paths if not p.startswith(("/", "$", "~"))}
    assert {"runs", "nested_experiments4"} <= relative
    for path in relative:
        assert _ignored(f"{path}/some-exp-id/run.json"), path


def test_readme_says_the_preference_default_comes_from_the_repository():
    from args import REPO as ARGS_REPO, build_parser

    default = build_parser().get_default("preference")
    assert Path(default).is_absolute() and Path(default).parent == ARGS_REPO
    readme = (REPO / "README.md").read_text()
    assert "are relative paths" not in readme
    assert re.search(r"`--preference`[^.]*defaults? to the repository's "
                     r"`example_preference.yaml`", readme)
