"""--report-test: the model a run hands over, and what it is compared with (task
arithmetic at its best evaluated lambda, the pretrained model), scored on each evaluation
dataset's test split once everything was chosen on the evaluation split.

In the task_vectors layout ``<Dataset>Val`` is a validation set held out of the training
data and ``<Dataset>`` the test set, with the same classes and so the same head: the
figures a paper reports come from the latter, where the run's own choices cannot have
fitted its noise.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from map_common.errors import MAPError

SUFFIX = "Val"
HANDED_OVER = "handed over"  # the row of the model the run hands over
TASK_ARITHMETIC = "task arithmetic"  # the start of the TA row's label (ta_label)


def ta_label(lam: float) -> str:
    """The row of task arithmetic at ``lam``."""
    return f"{TASK_ARITHMETIC}, lambda {lam:.3g}"


def test_datasets(datasets: Sequence[str]) -> dict[str, str]:
    """{evaluation dataset: its test split's dataset}, ``<Dataset>Val`` -> ``<Dataset>``."""
    out = {}
    for d in datasets:
        if not d.endswith(SUFFIX) or d == SUFFIX:
            raise MAPError(f"--report-test: {d} is not a <Dataset>{SUFFIX} validation set, so "
                           f"it has no separate test split to report on")
        out[d] = d[:-len(SUFFIX)]
    return out


def summarise(evals: Mapping[str, Mapping[str, Mapping[str, float]]],
              test_of: Mapping[str, str], preference: Sequence[float],
              coefficients: Mapping[str, Any]) -> dict[str, Any]:
    """The report of models already evaluated on the test splits (name -> {test dataset:
    {"accuracy", "loss", ...}}): per model its coefficients, accuracy / loss per test
    dataset, the preference-weighted mean and the worst accuracy."""
    from src.core.pick_check import weighted_mean, worst_task

    rows = {}
    for name, got in evals.items():
        acc = {t: float(got[t]["accuracy"]) for t in test_of.values()}
        y = np.array(list(acc.values()))
        rows[name] = {"coefficients": coefficients[name], "accuracy": acc,
                      "loss": {t: float(got[t]["loss"]) for t in test_of.values()},
                      "mean": float(weighted_mean(y, preference)[0]),
                      "worst": float(worst_task(y, "max")[0])}
    out = {"datasets": dict(test_of), "models": rows}
    ta = next((n for n in rows if n.startswith(TASK_ARITHMETIC)), None)
    if HANDED_OVER in rows and ta is not None:
        # which of the two measures the pick loses to TA on, where it was not chosen
        out["below_task_arithmetic"] = [m for m in ("mean", "worst")
                                        if rows[HANDED_OVER][m] < rows[ta][m]]
    return out


def lines(report: Mapping[str, Any]) -> list[str]:
    """The terminal's table: one row per model, mean, worst and each dataset's accuracy."""
    test_of, rows = report["datasets"], report["models"]
    width = max(len(n) for n in rows)
    head = "Test splits (--report-test; nothing was chosen on them), accuracy:"
    cols = ["mean", "worst", *test_of.values()]
    out = [head, "  " + " " * width + "  " + "  ".join(f"{c:>9}" for c in cols)]
    for name, row in rows.items():
        values = [row["mean"], row["worst"], *row["accuracy"].values()]
        out.append(f"  {name:<{width}}  " + "  ".join(f"{v:>9.4f}" for v in values))
    below = report.get("below_task_arithmetic")
    if below:
        out.append(f"  On the test splits the model handed over is below task arithmetic on "
                   f"the {' and the '.join(below)}.")
    return out
