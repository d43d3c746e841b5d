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


COMMAND = re.compile(r"(run_MAP\.py|bench/\w+\.py|scripts/[\w/]+\.py)([^\n`|]*)")


def unknown_flags(text: str) -> list[tuple[str, str]]:
    """(script, flag) for each flag a command line in ``text`` gives that its script does not
    define: run_MAP.py's from its parser, a bench or script's from its source (and
    bench/common.py's shared flags)."""
    from args import build_parser

    ours = {o for a in build_parser()._actions for o in a.option_strings}
    shared = (REPO / "bench" / "common.py").read_text()
    sources: dict[str, str] = {}  # each script read once
    bad = []
    for m in COMMAND.finditer(re.sub(r"\\\n\s*", " ", text)):  # continuation lines joined
        script = m.group(1)
        if script != "run_MAP.py" and script not in sources:
            path = REPO / script
            sources[script] = path.read_text() if path.exists() else ""
        for flag in re.findall(r"(?<![\w-])(--[a-zA-Z][\w-]*)", m.group(2)):
            if script == "run_MAP.py":
                known = flag in ours
            else:
                known = f'"{flag}"' in sources[script] or (
                    "add_common_flags" in sources[script] and f'"{flag}"' in shared)
            if not known:
                bad.append((script, flag))
    return bad


def test_every_flag_the_documents_give_a_command_exists():
    texts = {p.name: p.read_text() for p in [REPO / "README.md", REPO / "ARCHITECTURE.md",
                                            *(REPO / "docs").glob("*.md")]}
    assert sum(len(COMMAND.findall(t)) for t in texts.values()) > 50
    unknown = {name: unknown_flags(t) for name, t in texts.items()}
    assert {name: bad for name, bad in unknown.items() if bad} == {}
    # and it does find one
    assert unknown_flags("`.venv/bin/python run_MAP.py --demo --no-such-flag`\n"
                         "python bench/many_tasks.py --seeds 0 \\\n  --colour red") == [
        ("run_MAP.py", "--no-such-flag"), ("bench/many_tasks.py", "--colour")]
