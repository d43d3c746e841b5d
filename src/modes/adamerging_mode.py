"""--method adamerging: merge coefficients learned without labels (AdaMerging, Yang et al.,
ICLR 2024; AdaMerging++ with --merge-method ties).

One engine in this process learns task-wise or layer-wise coefficients by minimising the
entropy of each task's head on the evaluation sets' own images (task_vectors.adamerging),
checkpointing as it goes, so the same command continues a killed run. Then the learned
model, the pretrained model, task arithmetic at the prior and (with plain task vectors)
each fine-tuned model are evaluated, and the run writes adamerging.json, final_model/ (as
nested mode does), the entropy curve and run.json. Every evaluation is kept in
adamerging_evaluations.json, so the same command again scores nothing twice."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from map_common.errors import MAPError
from src.run.config import RunConfig
from src.modes.common import RunContext, finish, open_run, write_final_model
from src.run import report_on_test
from src.plotting.adamerging import plot_entropy_curve
from src.run.results import jsonable, read_json, write_json

STATE = "adamerging_state.pt"
EVALUATIONS = "adamerging_evaluations.json"
IMAGES_NOTE = ("AdaMerging learns from unlabeled images of each task's evaluation dataset: "
               "the same images the accuracies here are measured on, as AdaMerging uses its "
               "test sets. Labels are not read while learning, only to report accuracy.")


def run(config: RunConfig) -> dict[str, Any]:
    from task_vectors import adamerging as am

    settings = config.adamerging
    vectors = config.evaluation.merge_method.name  # ta, or ties: AdaMerging++
    name = am.method_name(settings.granularity, vectors)
    # a checkpoint of other settings is refused before the models are loaded
    am.check_checkpoint(config.run_path / STATE, config.models, config.datasets, settings,
                        vectors)
    Scores.read(config.run_path / EVALUATIONS)  # a damaged one too
    with open_run(config) as ctx:
        engine = ctx.evaluator.engine  # adamerging runs on one local engine (config refuses Ray)
        state_path = ctx.run.file(STATE, "AdaMerging checkpoint: coefficients, "
                                  "Adam state, step, entropy curve (the same command continues "
                                  "from it)")
        result = am.learn(engine, list(config.datasets), settings, vectors=vectors,
                          checkpoint=state_path, desc=name)
        ctx.timings["adamerging_seconds"] = result.seconds
        layout = am.Layout.of(engine)
        merged = am.merged_flat(engine.theta_pre, engine.tau, result.lambdas, layout)
        scores = Scores(ctx.run.file(EVALUATIONS, "every evaluation of the run (validation "
                                     "and --report-test splits), reused by a rerun"),
                        {"tasks": list(config.models), "vectors": vectors,
                         "prior": settings.prior}, result.per_task())
        evals = _references(engine, am, layout, config, vectors, settings.prior, scores)
        evals[name] = scores.get("learned", config.datasets,
                                 lambda ds: am.evaluate_merged(engine, merged, ds))
        final = _write_final_model(ctx, engine, merged, name, result, evals[name])
        info = _write_adamerging_json(ctx, name, vectors, result, layout, evals)
        figures = plot_entropy_curve(
            result.curve, list(config.datasets),
            ctx.run.file("adamerging_entropy.png", "entropy of each task's head per step "
                         "(the objective AdaMerging minimised)"),
            title=f"{name}: {len(result.curve)} steps", pdf=config.pdf)
        summary = {"method": name, "granularity": settings.granularity, "vectors": vectors,
                   "unlabeled_images": IMAGES_NOTE, "steps": len(result.curve),
                   "resumed_from_step": result.resumed_from,
                   "learning_seconds": result.seconds, "accuracy": info["accuracy"],
                   "mean_accuracy": info["mean_accuracy"], "final_model": final,
                   "figures": [str(f) for f in figures]}
        if config.report_test:
            summary["test"] = _report_test(ctx, engine, am, layout, merged, result,
                                           settings.prior, scores)
        finish(ctx, summary, show=False)
    _print(ctx, name, evals, result)
    if "test" in summary:
        print("\n".join(report_on_test.lines(summary["test"])))
    return summary


class Scores:
    """The run's evaluations, label -> dataset -> {"accuracy", "loss", ...}, on both splits
    (a test split is named apart from its Val set), written to ``path`` as they are made.
    A rerun or a resumed ``--report-test`` evaluates only what is missing. Everything is
    dropped when ``setting`` changed, and the learned model's scores (label "learned") are
    dropped when its coefficients changed (a run continued with more steps)."""

    def __init__(self, path: Path, setting: dict[str, Any], learned: dict[str, Any]):
        stored = self.read(path)
        setting, learned = jsonable(setting), jsonable(learned)
        kept = {}
        if isinstance(stored, dict) and stored.get("setting") == setting \
                and isinstance(stored.get("scores"), dict):
            kept = {label: {d: v for d, v in got.items()
                            if isinstance(v, dict) and {"accuracy", "loss"} <= set(v)}
                    for label, got in stored["scores"].items() if isinstance(got, dict)}
            if stored.get("learned") != learned:
                kept.pop("learned", None)
        self.path = path
        self.data = {"setting": setting, "learned": learned, "scores": kept}

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        """The stored file (None when there is none); one line when it is damaged."""
        stored = read_json(path)
        if stored is not None and not isinstance(stored, dict):
            raise MAPError(f"{path}: not a record of evaluations (expected an object); move "
                           "it away to start afresh")
        return stored

    def get(self, label: str, datasets: Sequence[str],
            evaluate: Callable[[list[str]], dict[str, dict]]) -> dict[str, dict]:
        """{dataset: scores} of model ``label``; ``evaluate(missing datasets)`` makes the
        ones not stored yet."""
        have = self.data["scores"].setdefault(label, {})
        missing = [d for d in datasets if d not in have]
        if missing:
            have.update(jsonable(evaluate(missing)))
            write_json(self.path, self.data)
        return {d: have[d] for d in datasets}


def _report_test(ctx: RunContext, engine, am, layout, merged, result, prior: float,
                 scores: Scores) -> dict[str, Any]:
    """--report-test: the learned model, its starting point (task arithmetic at the prior)
    and the pretrained model on the test splits, images AdaMerging did not learn from."""
    config = ctx.config
    test_of = report_on_test.test_datasets(config.datasets)
    test = list(test_of.values())
    T = engine.n_tasks
    start, ta = np.full(T, prior), report_on_test.ta_label(prior)
    evals = {report_on_test.HANDED_OVER: scores.get(
                 "learned", test, lambda ds: am.evaluate_merged(engine, merged, ds)),
             ta: scores.get("prior", test, _merge_at(engine, am, layout, start)),
             "pretrained": scores.get("pretrained", test, _merge_at(engine, am, layout))}
    coefficients = {report_on_test.HANDED_OVER: result.per_task(),
                    ta: dict(zip(config.models, start.tolist())),
                    "pretrained": dict.fromkeys(config.models, 0.0)}
    return report_on_test.summarise(evals, test_of, config.preference, coefficients)


def _references(engine, am, layout, config: RunConfig, vectors: str, prior: float,
                scores: Scores) -> dict[str, dict]:
    """Evaluations of the pretrained model, task arithmetic at the prior (the learning's
    start) and, with plain task vectors, each fine-tuned model on its own dataset."""
    T = engine.n_tasks
    datasets = list(config.datasets)
    ta = "task arithmetic" if vectors == "ta" else "TIES vectors, summed"
    out = {"pretrained": scores.get("pretrained", datasets, _merge_at(engine, am, layout)),
           f"{ta}, lambda={prior:g}": scores.get(
               "prior", datasets, _merge_at(engine, am, layout, np.full(T, prior)))}
    if vectors == "ta":
        out["fine-tuned (own dataset)"] = {
            d: scores.get(f"fine-tuned {t}", [d], _merge_at(engine, am, layout, np.eye(T)[i]))[d]
            for i, (t, d) in enumerate(zip(config.models, datasets))}
    return out


def _merge_at(engine, am, layout, c: np.ndarray | None = None
              ) -> Callable[[list[str]], dict[str, dict]]:
    """evaluate(datasets) of theta_pre + sum_i c_i tau_i (theta_pre itself when c is None),
    merged only when something is evaluated."""
    def evaluate(datasets: list[str]) -> dict[str, dict]:
        flat = engine.theta_pre.clone() if c is None else \
            am.merged_flat(engine.theta_pre, engine.tau, c, layout)
        return am.evaluate_merged(engine, flat, datasets)
    return evaluate


def _write_adamerging_json(ctx: RunContext, name: str, vectors: str, result, layout,
                           evals: dict[str, dict]) -> dict[str, Any]:
    config = ctx.config
    learned = evals[name]
    accuracy = {d: learned[d]["accuracy"] for d in config.datasets}
    s = result.settings
    images = {d: {"images": int(len(ctx.evaluator.engine.eval_sets[d].labels)),
                  "seen_per_step": min(s.batch_size,
                                       len(ctx.evaluator.engine.eval_sets[d].labels))}
              for d in config.datasets}
    lam = result.lambdas
    info = {
        "method": name, "granularity": s.granularity,
        "vectors": {"ta": "task vectors as fine-tuned", "ties":
                    "TIES-preprocessed task vectors (AdaMerging++)"}[vectors],
        "settings": {"prior": s.prior, "lr": s.lr, "betas": [s.beta1, s.beta2],
                     "steps": s.steps, "batch_size": s.batch_size, "clamp": [s.low, s.high],
                     "seed": s.seed, "checkpoint_every": s.checkpoint_every,
                     "optimizer": "Adam", "loss": "mean over tasks of the mean entropy of "
                     "the task head's softmax"},
        "unlabeled_images": {"note": IMAGES_NOTE, "per_dataset": images},
        "tasks": list(config.models), "datasets": list(config.datasets),
        "coefficients": result.per_task(),
        "coefficient_summary": {t: {"mean": float(np.mean(row)), "min": float(np.min(row)),
                                    "max": float(np.max(row))}
                                for t, row in zip(config.models, lam.reshape(len(lam), -1))},
        "layers": [{"name": k, "params": int(b - a)} for k, (a, b) in
                   zip(layout.keys, layout.spans)],
        "accuracy": accuracy, "mean_accuracy": float(np.mean(list(accuracy.values()))),
        "entropy": {d: learned[d]["entropy"] for d in config.datasets},
        "evaluations": evals,
        "entropy_curve": {"per_task": {t: result.curve[:, k].tolist()
                                       for k, t in enumerate(config.datasets)},
                          "mean": result.curve.mean(axis=1).tolist()},
        "steps": int(len(result.curve)), "resumed_from_step": int(result.resumed_from),
        "learning_seconds_this_process": float(result.seconds)}
    write_json(ctx.run.file("adamerging.json", "learned coefficients (per task, per layer), "
                            "settings, which images were used, accuracy / loss / entropy per "
                            "dataset of the learned model and references, the entropy curve"),
               info)
    return info


def _write_final_model(ctx: RunContext, engine, merged, name: str, result,
                       evals: dict) -> dict[str, Any]:
    """final_model/finetuned.pt (task_vectors pickle) and merge.json, as nested mode."""
    config = ctx.config
    state = None
    if config.final_checkpoint:
        engine.set_theta(merged)
        state = {k: v.detach().to("cpu", copy=True)
                 for k, v in engine.encoder.state_dict().items()}
    info = {"method": name, "coefficients": result.per_task(),
            "accuracy": {d: evals[d]["accuracy"] for d in config.datasets},
            "entropy": {d: evals[d]["entropy"] for d in config.datasets}}
    write_final_model(ctx, state, info, "its learned coefficients and accuracies")
    path = ctx.run.path / "final_model" / "finetuned.pt"
    return {"path": str(path) if config.final_checkpoint else None,
            "accuracy": info["accuracy"]}


def _print(ctx: RunContext, name: str, evals: dict[str, dict], result) -> None:
    datasets = list(ctx.config.datasets)
    print(f"\nRun directory: {ctx.run.path}")
    print(f"{name}: {len(result.curve)} steps (this process: "
          f"{len(result.curve) - result.resumed_from}, {result.seconds:.1f} s); mean entropy "
          f"{result.curve[0].mean():.4f} at the first step, {result.curve[-1].mean():.4f} at "
          "the last.")
    print("Learned on the evaluation sets' unlabeled images: accuracies are on those images.")
    width = max(len(d) for d in datasets + ["mean"])
    columns = list(evals)
    widths = [max(8, len(c)) for c in columns]
    print(f"{'accuracy':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths)))
    for d in datasets + ["mean"]:
        values = [np.mean([evals[c][x]["accuracy"] for x in datasets]) if d == "mean"
                  else evals[c][d]["accuracy"] for c in columns]
        print(f"{d:<{width}}  " + "  ".join(f"{v:>{w}.4f}" for v, w in zip(values, widths)))
