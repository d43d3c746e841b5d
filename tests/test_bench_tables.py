"""The goal tables in docs/front_quality.md and the README are what the benches print from
the stored rows (bench/results), with bayesian's defaults named by args.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
FQ_CSVS = ["fq_pairs.csv", "fq_triples.csv", "fq_triples_drawn.csv",
           "fq_pairs_bayesian_lhs.csv", "fq_triples_bayesian_lhs.csv",
           "fq_triples_botorch_seeds.csv"]
MT_CSVS = ["many_tasks_map_local.csv", "many_tasks_map.csv", "many_tasks_bayesian_lhs.csv",
           "many_tasks_bayesian_ehvi.csv", "many_tasks_bayesian.csv"]


@pytest.fixture(scope="module")
def bench(request):
    sys.path.insert(0, str(REPO / "bench"))
    request.addfinalizer(lambda: sys.path.remove(str(REPO / "bench")))
    import front_quality
    import many_tasks

    return front_quality, many_tasks


def _doc_rows(path: Path, prefix: str) -> list[str]:
    """The goal-table rows (bayesian against map) that start with ``prefix``."""
    return [line for line in path.read_text().splitlines()
            if line.startswith(prefix) and " vs map " in line]


def test_bayesian_default_rows_follow_args(bench):
    from args import default_bayes_acquisition, default_bayes_design

    front_quality, _ = bench
    for T in (2, 3, 4):
        assert default_bayes_design(default_bayes_acquisition(T)) == "lhs"
        assert front_quality.bayes_default_label(T) == "bayesian lhs+ehvi, evaluated pick"
    assert front_quality.bayes_default_label(5) == "bayesian, evaluated pick"


def test_the_docs_goal_table_of_bayesians_defaults_is_printed_from_the_stored_rows(
        bench, capsys):
    front_quality, _ = bench
    rows, _ = front_quality.read_csvs([RESULTS / name for name in FQ_CSVS])
    front_quality.print_goals(rows, markdown=True)
    printed = set(capsys.readouterr().out.splitlines())
    documented = _doc_rows(REPO / "docs" / "front_quality.md",
                           "| bayesian lhs+ehvi, evaluated pick")
    assert len(documented) == 8  # 3 seeds and the pooled runs, pairs and triples
    assert [row for row in documented if row not in printed] == []


def test_the_docs_botorch_rows_at_three_seeds_are_printed_from_the_stored_rows(bench, capsys):
    front_quality, _ = bench
    rows, _ = front_quality.read_csvs([RESULTS / name for name in FQ_CSVS])
    front_quality.print_goals(rows, markdown=True)
    printed = set(capsys.readouterr().out.splitlines())
    documented = [line for line in (REPO / "docs" / "front_quality.md").read_text().splitlines()
                  if line.startswith("| map lhs+ehvi 2x5, evaluated pick") and "botorch" in line
                  and ("triples (seed" in line or "pooled over seeds" in line)]
    assert len(documented) == 8  # HV ratio and regret at 3 seeds, then pooled
    assert [row for row in documented if row not in printed] == []


def test_the_docs_goal_tables_of_the_defaults_before_still_print(bench, capsys):
    """Rows written before the LHS first round name bayesian's defaults of then."""
    front_quality, _ = bench
    rows, _ = front_quality.read_csvs([RESULTS / "fq_pairs.csv", RESULTS / "fq_triples.csv"])
    front_quality.print_goals(rows, markdown=True)
    printed = capsys.readouterr().out.splitlines()
    ours = [line for line in printed if line.startswith("| bayesian ehvi, evaluated pick")]
    assert len(ours) == 8
    documented = set(_doc_rows(REPO / "docs" / "front_quality.md", "| bayesian ehvi, evaluated "
                                                                    "pick"))
    assert [row for row in ours if row not in documented] == []


def test_the_readme_bayesian_goal_at_four_tasks_is_printed_from_the_stored_rows(bench,
                                                                               capsys):
    _, many_tasks = bench
    rows = many_tasks.read_csvs([RESULTS / name for name in MT_CSVS])
    many_tasks.goals(rows)
    line = next(x for x in capsys.readouterr().out.splitlines()
                if x.startswith("| bayesian lhs+ehvi vs map at T=4"))
    # the README's row: the models handed over (--pick-from evaluated), 0 of 6 runs
    assert "eval: mean 0.7327 vs 0.7538, worst 0.6469 vs 0.6464; 0/6" in line
    assert "held: mean 0.7238 vs 0.7412, worst 0.6372 vs 0.6378; 0/6" in line
    readme = (REPO / "README.md").read_text()
    assert "mean 0.7327 vs 0.7538, worst 0.6469 vs 0.6464; held-out 0.7238 vs 0.7412, " \
        "0.6372 vs 0.6378; 0 of 6 runs on either split" in readme


def test_from_csv_refuses_what_is_not_this_benchs_csv_in_one_line(bench, tmp_path, capsys):
    """Before, a missing file, a folder or the other bench's CSV was a traceback."""
    import argparse

    from common import csv_with

    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--from-csv", nargs="+", type=csv_with("tasks", "hv_ratio_held"))
    for value, said in ((str(tmp_path / "none.csv"), "no such file"),
                        (str(tmp_path), "a folder, not a file"),
                        (str(RESULTS / "many_tasks_map.csv"),
                         "not this bench's --csv (no column hv_ratio_held)")):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(["--from-csv", value])
        err = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and err[-1] == \
            f"bench: error: argument --from-csv: {value}: {said}", err
    assert parser.parse_args(["--from-csv", str(RESULTS / "fq_pairs.csv")]).from_csv == \
        [RESULTS / "fq_pairs.csv"]


def test_a_mean_over_seeds_meets_a_target_only_when_its_interval_does(bench):
    import zoo_report
    from common import mean_interval

    mean, half = mean_interval([-2.41, -1.42, -1.15, -1.69, -2.22])
    assert mean == pytest.approx(-1.778)
    # Student t with 4 degrees of freedom, not the normal 1.96
    assert half == pytest.approx(2.776 * 0.5303 / 5 ** 0.5, rel=1e-3)
    assert zoo_report.target_met(mean, half, -2.0) == "within noise"
    assert zoo_report.target_met(-1.5, 0.2, -2.0) == "yes"
    assert zoo_report.target_met(-2.5, 0.2, -2.0) == "NO"
    one = mean_interval([-1.9])  # one seed: no interval, the value alone decides
    assert one[0] == -1.9 and one[1] != one[1]
    assert zoo_report.target_met(*one, -2.0) == "yes"
    assert zoo_report.target_met(-2.1, float("nan"), -2.0) == "NO"


def test_the_zoo_report_searches_pairs_on_the_tenth_grid_and_takes_dare_seeds(bench):
    import zoo_report

    assert zoo_report.PAIR_GRID == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert zoo_report.parse_args([]).dare_seeds == 10
    assert zoo_report.parse_args(["--dare-seeds", "3"]).dare_seeds == 3
    with pytest.raises(SystemExit):
        zoo_report.parse_args(["--dare-seeds", "0"])
