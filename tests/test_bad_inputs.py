"""Bad input across the three modes, as a new user types it: each is exactly one line on
stderr naming the problem, exit code 2, no traceback, and nothing written anywhere (the run
directory, --results-path, or outside it for an exp-id that tries to be a path)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

PAIR = ["--zeroshot-merge-models", "LetterVal", "DigitVal"]
FOUR = ["--zeroshot-merge-models", "LetterVal", "DigitVal", "ShapeVal", "SymbolVal"]
SEVEN = ["--zeroshot-merge-models", "LetterVal", "DigitVal", "ShapeVal", "ColorVal",
         "TextureVal", "PositionVal", "ArrowVal"]


def _file(tmp: Path, name: str, data: bytes) -> str:
    path = tmp / name
    path.write_bytes(data)
    return str(path)


def _folder(tmp: Path, name: str) -> str:
    (tmp / name).mkdir()
    return str(tmp / name)


def _run_json(tmp: Path, data: bytes) -> str:
    """A folder whose run.json holds ``data``."""
    folder = Path(_folder(tmp, "other_run"))
    (folder / "run.json").write_bytes(data)
    return str(folder)


def _compared_run(tmp: Path, front) -> str:
    """A finished map run of the demo pair (its run.json) whose front file holds ``front``."""
    import json

    folder = Path(_run_json(tmp, json.dumps({
        "method": "map", "models": ["LetterVal", "DigitVal"],
        "datasets": ["LetterVal", "DigitVal"], "metric": "accuracy"}).encode()))
    (folder / "LetterVal_DigitValpareto_front.json").write_text(json.dumps(front))
    return str(folder)


def _pref(tmp: Path, text: str) -> str:
    return _file(tmp, "pref.yaml", text.encode())


def _no_demo(t: Path, z: Path, method: str, data: str) -> list[str]:
    """MNISTVal and EuroSATVal (datasets read from --data-location) with the zoo's
    checkpoints standing in for theirs (10 classes each, like the digits heads)."""
    save = t / "save"
    for task, zoo_task in (("MNISTVal", "LetterVal"), ("EuroSATVal", "DigitVal")):
        (save / task).mkdir(parents=True)
        (save / task / "finetuned.pt").symlink_to(z / zoo_task / "finetuned.pt")
        (save / f"head_{task}.pt").symlink_to(z / f"head_{zoo_task}.pt")
    (save / "zeroshot.pt").symlink_to(z / "zeroshot.pt")
    return ["--method", method, "--model", f"local-dir:{z / 'clip'}", "--save", str(save),
            "--data-location", data, "--device", "cpu", "--preference",
            _pref(t, "MNISTVal: 1\nEuroSATVal: 1\n"), "--zeroshot-merge-models", "MNISTVal",
            "EuroSATVal"]


def _raw_folder(t: Path) -> str:
    (t / "data" / "MNIST" / "raw").mkdir(parents=True)
    return str(t / "data")


MAP = ["--demo", "--method", "map"]
BAYES = ["--demo", "--method", "bayesian"]
NESTED = ["--demo", "--method", "nested"]
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x80"

# (id, argv builder (tmp, zoo folder) -> argv, regex the one line must match)
Case = tuple[str, Callable[[Path, Path], list[str]], str]
CASES: list[Case] = [
    # ---- numeric flags: zero, negative, words, impossible budgets
    ("batch-size-zero", lambda t, z: [*MAP, "--batch-size", "0"],
     r"--batch-size: must be a positive integer, got 0"),
    ("batch-size-negative", lambda t, z: [*MAP, "--batch-size", "-5"],
     r"--batch-size: must be a positive integer, got -5"),
    ("batch-size-word", lambda t, z: [*NESTED, "--batch-size", "lots"],
     r"--batch-size: expected an integer, got 'lots'"),
    ("num-workers-negative", lambda t, z: [*MAP, "--num-workers", "-1"],
     r"--num-workers: must be 0 or more, got -1"),
    ("max-eval-samples-zero", lambda t, z: [*BAYES, "--max-eval-samples", "0"],
     r"--max-eval-samples: must be a positive integer, got 0"),
    ("max-eval-samples-negative", lambda t, z: [*MAP, "--max-eval-samples", "-3"],
     r"--max-eval-samples: must be a positive integer, got -3"),
    ("point-huge-map", lambda t, z: [*MAP, "--point", "1000000000"],
     r"--point: 1000000000 is more than 10,000, the largest sensible value"),
    ("point-huge-nested", lambda t, z: [*NESTED, "--point", "1000000000"],
     r"--point: 1000000000 is more than 10,000"),
    ("point-word", lambda t, z: [*BAYES, "--point", "ten"],
     r"--point: expected an integer, got 'ten'"),
    ("point-float", lambda t, z: [*MAP, "--point", "12.5"],
     r"--point: expected an integer, got '12.5'"),
    ("bayes-initial-huge", lambda t, z: [*BAYES, "--bayes-initial-pts", "1000000000"],
     r"--bayes-initial-pts: 1000000000 is more than 10,000"),
    ("bayes-iter-negative", lambda t, z: [*BAYES, "--bayes-iter", "-1"],
     r"--bayes-iter: must be a positive integer, got -1"),
    ("n-gen-zero", lambda t, z: [*MAP, "--n-gen", "0"],
     r"--n-gen: must be a positive integer, got 0"),
    ("n-gen-word", lambda t, z: [*NESTED, "--n-gen", "many"],
     r"--n-gen: expected an integer, got 'many'"),
    ("reevaluate-negative", lambda t, z: [*MAP, "--reevaluate", "-1"],
     r"--reevaluate: must be 0 or more, got -1"),
    ("seed-negative", lambda t, z: [*NESTED, "--seed", "-1"],
     r"--seed: must be 0 or more, got -1"),
    ("bounds-infinite", lambda t, z: [*MAP, "--bounds", "0", "inf"],
     r"--bounds: must be a finite number, got inf"),
    ("bounds-nan", lambda t, z: [*BAYES, "--bounds", "nan", "1"],
     r"--bounds: must be a finite number, got nan"),
    ("bounds-reversed", lambda t, z: [*MAP, "--bounds", "1", "0"],
     r"--bounds 1\.0 0\.0: LOW must be below HIGH"),
    ("metric-type-unknown", lambda t, z: [*MAP, "--metric-type", "f1"],
     r"--metric-type: invalid choice: 'f1'"),
    ("method-unknown", lambda t, z: ["--demo", "--method", "ga"],
     r"--method: invalid choice: 'ga'"),
    ("label-smoothing-one", lambda t, z: [*MAP, "--ls", "1"],
     r"--ls: must be in \[0, 1\), got 1"),
    ("device-not-a-device", lambda t, z: [*NESTED, "--device", "gpu0"],
     r"--device gpu0: not a device"),
    # ---- a file where a folder is meant, and an exp-id that is a path
    ("results-path-is-a-file", lambda t, z: [*MAP, "--results-path", _file(t, "r.txt", b"x")],
     r"--results-path: .*r\.txt is a file, not a folder"),
    ("results-path-under-a-file", lambda t, z: [
        *NESTED, "--results-path", _file(t, "r.txt", b"x") + "/sub"],
     r"run directory .*r\.txt/sub/bad: .*r\.txt is a file, not a folder"),
    ("zoo-dir-is-a-file", lambda t, z: [*MAP, "--zoo-dir", _file(t, "zoo.txt", b"x")],
     r"--zoo-dir: .*zoo\.txt is a file, not a folder"),
    ("cache-dir-is-a-file", lambda t, z: [*BAYES, "--cache-dir", _file(t, "c.txt", b"x")],
     r"--cache-dir: .*c\.txt is a file, not a folder"),
    ("data-location-is-a-file", lambda t, z: _no_demo(t, z, "map", _file(t, "d.txt", b"x")),
     r"--data-location: .*d\.txt is a file, not a folder"),
    ("exp-id-climbs-out", lambda t, z: [*MAP, "--exp-id", "../../somewhere"],
     r"--exp-id: '\.\./\.\./somewhere' is not a run name"),
    ("exp-id-has-a-separator", lambda t, z: [*BAYES, "--exp-id", "a/b"],
     r"--exp-id: 'a/b' is not a run name"),
    ("exp-id-dotdot", lambda t, z: [*NESTED, "--exp-id", ".."], r"--exp-id: '\.\.' is not"),
    ("exp-id-empty", lambda t, z: [*MAP, "--exp-id", ""], r"--exp-id: '' is not a run name"),
    ("exp-id-absolute", lambda t, z: [*MAP, "--exp-id", str(t / "elsewhere")],
     r"--exp-id: '.*elsewhere' is not a run name"),
    # ---- preference files
    ("preference-binary", lambda t, z: [*MAP, "--preference", _file(t, "p.png", PNG)],
     r"p\.png: not a text file"),
    ("preference-a-folder", lambda t, z: [*NESTED, "--preference", _folder(t, "prefs")],
     r"--preference .*prefs is a folder"),
    ("preference-a-list", lambda t, z: [*BAYES, "--preference", _pref(t, "[1, 2]\n")],
     r"must map dataset names to weights, got list"),
    ("preference-empty", lambda t, z: [*MAP, "--preference", _pref(t, "")],
     r"must map dataset names to weights, got NoneType"),
    ("preference-unknown-dataset", lambda t, z: [*MAP, "--preference", _pref(
        t, "LetterVal: 1\nDigitVall: 1\n")], r"no weight for task 'DigitVal'"),
    ("preference-negative", lambda t, z: [*NESTED, *FOUR, "--preference", _pref(
        t, "LetterVal: 1\nDigitVal: 1\nShapeVal: -2\nSymbolVal: 1\n")],
     r"'ShapeVal' must be a finite number >= 0, got -2"),
    ("preference-word", lambda t, z: [*BAYES, "--preference", _pref(
        t, "LetterVal: 1\nDigitVal: lots\n")], r"'DigitVal' must be a number, got 'lots'"),
    ("preference-missing", lambda t, z: [*MAP, "--preference", str(t / "nope.yaml")],
     r"preference file not found: .*nope\.yaml"),
    # ---- models and data
    ("model-twice", lambda t, z: [*MAP, "--zeroshot-merge-models", "LetterVal", "LetterVal"],
     r"a merge model is listed twice"),
    ("unknown-dataset", lambda t, z: [*NESTED, "--zeroshot-merge-models", "LetterVal",
                                      "NoSuchVal"], r"unknown model 'NoSuchVal'"),
    ("bayesian-seven-tasks", lambda t, z: [*BAYES, *SEVEN], r"at most 6 tasks, got 7"),
    ("save-is-a-file", lambda t, z: ["--method", "map", "--save", _file(t, "s.txt", b"x"),
                                     *PAIR], r"--save: .*s\.txt is a file, not a folder"),
    ("data-location-missing", lambda t, z: _no_demo(t, z, "map", str(t / "no-such-data")),
     r"MNIST: .*no-such-data/MNIST/raw not found"),
    ("data-location-empty", lambda t, z: _no_demo(t, z, "nested", _folder(t, "empty-data")),
     r"MNIST: .*empty-data/MNIST/raw not found"),
    ("data-files-missing", lambda t, z: _no_demo(t, z, "bayesian", _raw_folder(t)),
     r"MNIST"),
    # grid, truth, baselines, merge methods, precision
    ("grid-one-point-per-axis", lambda t, z: ["--demo", "--method", "grid", *PAIR,
                                              "--grid-points-per-axis", "1"],
     r"--grid-points-per-axis: must be at least 2, got 1"),
    ("grid-too-large", lambda t, z: ["--demo", "--method", "grid", *PAIR,
                                     "--grid-points-per-axis", "1000"],
     r"1000000 merges; at most 200000 \(largest per axis for 2 tasks: 447\)"),
    ("grid-four-tasks-needs-size", lambda t, z: ["--demo", "--method", "grid", *FOUR],
     r"set --grid-points-per-axis"),
    ("truth-missing", lambda t, z: [*MAP, *PAIR, "--truth", str(t / "none")],
     r"grid run \(--truth\) not found"),
    ("truth-not-a-run", lambda t, z: [*MAP, *PAIR, "--truth", _folder(t, "empty")],
     r"--truth .*empty: no run.json"),
    ("truth-with-nested", lambda t, z: [*NESTED, "--truth", _folder(t, "empty")],
     r"--truth scores map and bayesian fronts"),
    ("compare-a-file", lambda t, z: [*MAP, *PAIR, "--compare", _file(t, "c.json", b"{}")],
     r"--compare .*c\.json: not a finished map or bayesian run"),
    ("truth-run-json-a-list", lambda t, z: [*MAP, *PAIR, "--truth", _run_json(t, b"[1]")],
     r"run\.json: not a run record \(expected an object\)"),
    ("compare-run-json-a-list", lambda t, z: [*MAP, *PAIR, "--compare",
                                              _run_json(t, b"[1]")],
     r"run\.json: not a run record \(expected an object\)"),
    *[(f"compare-front-{k}", lambda t, z, front=front: [*MAP, *PAIR, "--compare",
                                                          _compared_run(t, front)],
       r"LetterVal_DigitValpareto_front\.json: not a front file")
      for k, front in enumerate(([1], {"a": 1}, {"[0.1, 0.2]": [0.5]},
                                 {"[0.1, 0.2]": ["a", 0.5]}, {"[0.1]": [0.5, 0.5]}))],
    ("baselines-with-nested", lambda t, z: [*NESTED, "--baselines"],
     r"--baselines goes with --method map or bayesian"),
    ("baselines-with-dare", lambda t, z: [*BAYES, *PAIR, "--baselines", "--merge-method",
                                          "dare"], r"--merge-method ta"),
    ("merge-method-unknown", lambda t, z: [*MAP, "--merge-method", "magic"],
     r"--merge-method: invalid choice: 'magic'"),
    ("ties-density-zero", lambda t, z: [*MAP, "--ties-density", "0"],
     r"--ties-density: must be in \(0, 1\], got 0"),
    ("dare-drop-rate-one", lambda t, z: [*BAYES, "--dare-drop-rate", "1"],
     r"--dare-drop-rate: must be in \[0, 1\), got 1"),
    ("precision-unknown", lambda t, z: [*NESTED, "--precision", "fp8"],
     r"--precision: invalid choice: 'fp8'"),
    ("tau-dtype-unknown", lambda t, z: [*MAP, "--tau-dtype", "int8"],
     r"--tau-dtype: invalid choice: 'int8'"),
    ("workers-zero", lambda t, z: [*MAP, "--workers", "0"], r"--workers"),
    ("search-bounds-reversed", lambda t, z: [*MAP, "--search-bounds", "1", "-1"],
     r"--search-bounds 1.0 -1.0: LOW must be below HIGH"),
    ("pick-unknown", lambda t, z: [*MAP, "--pick", "best"], r"--pick: invalid choice: 'best'"),
    ("reevaluate-a-word", lambda t, z: [*MAP, "--reevaluate", "some"],
     r"--reevaluate: expected an integer, got 'some'"),
]


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("build, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(build, message, run_cli, capsys,
                                                        tmp_path, demo_zoo, zoo_root,
                                                        one_thread):
    argv = build(tmp_path, demo_zoo.path)
    defaults = {"--zoo-dir": zoo_root, "--results-path": str(tmp_path / "results"),
                "--exp-id": "bad", "--n-gen": "5", "--reevaluate": "0"}
    extra = [x for flag, value in defaults.items() if flag not in argv for x in (flag, value)]
    before = _tree(tmp_path)
    rc = run_cli(*argv, *extra)
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("run_MAP.py: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert _tree(tmp_path) == before  # no run directory, no results folder, nothing outside
    assert not (tmp_path.parent.parent / "somewhere").exists()


def test_the_table_is_large_and_covers_every_mode(tmp_path, demo_zoo):
    assert len(CASES) >= 40
    methods = []
    for i, (_, build, _) in enumerate(CASES):
        (tmp_path / str(i)).mkdir()
        argv = build(tmp_path / str(i), demo_zoo.path)
        methods.append(argv[argv.index("--method") + 1] if "--method" in argv else "nested")
    assert all(methods.count(m) >= 8 for m in ("map", "bayesian", "nested")), methods
