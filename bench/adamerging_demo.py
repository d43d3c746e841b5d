"""AdaMerging on the 8 demo tasks beside the pretrained model, task arithmetic, TIES and
nested MAP, and against the AdaMerging paper's gains over task arithmetic.

    .venv/bin/python bench/adamerging_demo.py [--steps 500] [--batch-size 16] [--lr 1e-3]
        [--prior 0.3] [--point 20] [--n-gen 200] [--no-nested] [--figure PNG] [--threads 1]

One engine over the zoo's 8 tasks holds each task's evaluation set (`<Task>Val`, what the
tool evaluates on) and its held-out split (common.heldout_dataset: disjoint images, same
classes, same head). Every model is scored on both:

* the pretrained model; task arithmetic θ_pre + λ Σ τ_i and TIES-merging (density from the
  merge-method registry's `ties`, λ times the disjoint mean), each at the λ with the best
  mean accuracy on the evaluation sets (TA: 0.1..1.0; TIES: 0.1..1.5);
* AdaMerging task-wise and layer-wise on the task vectors, and AdaMerging++ (the same on
  the registry's TIES vectors), learned by task_vectors.adamerging.learn with the
  original's defaults from the evaluation sets' images (labels unread, as the paper learns
  from its test images), and the sum of the TIES vectors at the prior (where ++ starts);
* nested MAP's final model at equal preference, run as bench/nested_demo.py runs it
  (its evaluations read the evaluation sets' labels).

Prints accuracy per task and mean on both splits, learning steps and wall seconds, the mean
entropy on each split before (at the prior) and after learning, and each variant's gain
over task arithmetic beside the paper's (CLIP ViT-B/32, 8 tasks). With --figure, the
task-wise entropy curve is drawn there. Asserts nothing.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np

from common import add_common_flags, demo_zoo, heldout_dataset, set_threads, workdir
from map_common.argtypes import float_in, positive_int
from nested_demo import EIGHT, run_nested

# The AdaMerging paper (Yang et al., ICLR 2024), CLIP ViT-B/32, 8 tasks, mean accuracy (%).
PAPER = {"task arithmetic": 69.1, "TIES-merging": 72.4,
         "AdaMerging (task-wise)": 71.1, "AdaMerging++ (task-wise)": 73.8,
         "AdaMerging (layer-wise)": 80.1, "AdaMerging++ (layer-wise)": 81.1}
TIES_SWEEP = tuple(round(0.1 * k, 1) for k in range(1, 16))
VARIANTS = (("task", "ta"), ("layer", "ta"), ("task", "ties"), ("layer", "ties"))


@dataclass
class Scored:
    """One merged model's accuracy and mean entropy per dataset (both splits)."""

    name: str
    accuracy: dict[str, float]
    entropy: dict[str, float]
    notes: dict[str, object] = field(default_factory=dict)
    label: str = ""  # the column heading

    def __post_init__(self) -> None:
        self.label = self.label or self.name.replace("AdaMerging", "AM").replace("-wise", "")

    def mean(self, datasets: list[str], what: str = "accuracy") -> float:
        return float(np.mean([getattr(self, what)[d] for d in datasets]))


def unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (the clamp range), got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=positive_int, default=500, help="AdaMerging steps")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="unlabeled images per task and step")
    p.add_argument("--lr", type=float_in(0.0, low_open=True), default=1e-3)
    p.add_argument("--prior", type=unit_float, default=0.3, help="every coefficient's start")
    p.add_argument("--point", type=positive_int, default=20, help="nested MAP: evaluations "
                   "per pair")
    p.add_argument("--n-gen", type=positive_int, default=200, help="nested MAP: NSGA-III "
                   "generations")
    p.add_argument("--no-nested", action="store_true", help="leave nested MAP out")
    p.add_argument("--figure", type=str, default=None,
                   help="write the task-wise entropy curve to this PNG")
    add_common_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    threads = set_threads(a.threads)
    import torch

    from task_vectors import adamerging as am
    from task_vectors.baselines import TA_SWEEP, TaskArithmetic, TIESMerging
    from task_vectors.engine import MergeEngine
    from task_vectors.merge_methods import METHODS

    zoo = demo_zoo()
    held = [heldout_dataset(t) for t in EIGHT]
    root = zoo.path
    heads = {t: str(root / f"head_{t}.pt") for t in EIGHT}
    heads |= {h: heads[t] for t, h in zip(EIGHT, held)}  # same classes, same head
    engine = MergeEngine.from_checkpoints(
        model_name=zoo.model_name, pretrained=str(root / "zeroshot.pt"),
        finetuned={t: str(root / t / "finetuned.pt") for t in EIGHT}, heads=heads,
        datasets=list(heads), data_location=str(root))
    sizes = {d: len(engine.eval_sets[d].labels) for d in heads}
    print(f"demo zoo: {zoo.path}; torch threads: {threads}; images per evaluation set "
          f"{sorted({sizes[t] for t in EIGHT})}, per held-out split "
          f"{sorted({sizes[h] for h in held})}")
    pre, tau = engine.theta_pre, engine.tau
    layout = am.Layout.of(engine)

    def score(name: str, flat: torch.Tensor, datasets: list[str] = EIGHT + held,
              label: str = "", **notes) -> Scored:
        evals = am.evaluate_merged(engine, flat, datasets)
        return Scored(name, {d: v["accuracy"] for d, v in evals.items()},
                      {d: v["entropy"] for d, v in evals.items()}, dict(notes), label)

    def best_lambda(label: str, short: str, lambdas, theta_of) -> tuple[float, Scored]:
        """The λ of the best mean accuracy on the evaluation sets; scored on both splits."""
        means = {lam: score(label, theta_of(lam), EIGHT).mean(EIGHT) for lam in lambdas}
        best = max(means, key=means.get)
        print(f"{label}, mean accuracy on the evaluation sets per λ: "
              + ", ".join(f"{lam:g}: {m:.3f}" for lam, m in means.items()))
        return best, score(label, theta_of(best), label=f"{short} λ={best:g}")

    start = time.perf_counter()
    models = [score("pretrained", pre.clone())]
    ta_lam, ta = best_lambda("task arithmetic", "TA", TA_SWEEP, lambda lam: TaskArithmetic(
        "TA", (lam,) * len(EIGHT)).theta(tau, pre))
    ties_method = METHODS["ties"]()
    ties_lam, ties = best_lambda("TIES-merging", "TIES", TIES_SWEEP, lambda lam: TIESMerging(
        "TIES", ties_method.density, lam).theta(tau, pre))
    models += [ta, ties]
    print(f"references: {time.perf_counter() - start:.0f} s")

    ties_tau = tau.clone()
    ties_method.tau_transform()(ties_tau)
    starts = {"ta": score(f"TA, λ = {a.prior:g}", am.merged_flat(
                  pre, tau, np.full(len(EIGHT), a.prior), layout)),
              "ties": score(f"TIES vectors, λ = {a.prior:g}", am.merged_flat(
                  pre, ties_tau, np.full(len(EIGHT), a.prior), layout),
                  label=f"TIESvec λ={a.prior:g}")}
    models.append(starts["ties"])
    curves = {}
    for granularity, vectors in VARIANTS:
        name = am.method_name(granularity, vectors)
        settings = am.AdaMergingSettings(granularity=granularity, prior=a.prior, lr=a.lr,
                                         steps=a.steps, batch_size=a.batch_size)
        vectors_tau = tau if vectors == "ta" else ties_tau
        result = am.learn(engine, EIGHT, settings, tau=None if vectors == "ta" else ties_tau,
                          vectors=vectors, desc=name)
        curves[name] = result.curve
        learned = score(name, am.merged_flat(pre, vectors_tau, result.lambdas, layout),
                        steps=len(result.curve), seconds=result.seconds, start=starts[vectors],
                        lambdas=result.lambdas)
        models.append(learned)
        print(f"{name}: {len(result.curve)} steps, {result.seconds:.0f} s")

    if not a.no_nested:
        with workdir(a.keep) as tmp:
            nested_run = run_nested(zoo, EIGHT, tmp, a.point, a.n_gen)
        c = tuple(float(nested_run.coefficients[t]) for t in EIGHT)
        models.append(score("nested MAP", TaskArithmetic("nested", c).theta(tau, pre),
                            evaluations=nested_run.n_evaluations, seconds=nested_run.wall))

    report(models, ta, held, a)
    if a.figure:
        from src.plotting.adamerging import plot_entropy_curve

        name = am.method_name("task", "ta")
        paths = plot_entropy_curve(curves[name], EIGHT, a.figure,
                                   title=f"{name}: {len(curves[name])} steps")
        print(f"\nentropy curve: {', '.join(map(str, paths))}")


def report(models: list[Scored], ta: Scored, held: list[str], a: argparse.Namespace) -> None:
    labels = [m.label for m in models]
    width = max(len(x) for x in labels) + 1
    for split, datasets, names in (("evaluation sets (AdaMerging learned from their images)",
                                    EIGHT, EIGHT),
                                   ("held-out split (disjoint images)", held, EIGHT)):
        print(f"\naccuracy on the {split}")
        print(f"{'task':<12}" + "".join(f"{x:>{width}}" for x in labels))
        for d, t in zip(datasets, names):
            print(f"{t:<12}" + "".join(f"{m.accuracy[d]:>{width}.3f}" for m in models))
        print(f"{'mean':<12}" + "".join(f"{m.mean(datasets):>{width}.3f}" for m in models))

    print(f"\nAdaMerging: prior {a.prior:g}, lr {a.lr:g}, batch {a.batch_size} per task; "
          "entropy = mean over tasks of the mean entropy (nats) on the whole split, at the "
          "prior and after learning")
    print(f"{'model':<26}{'steps':>6}{'wall s':>8}{'entropy eval':>15}{'entropy held':>15}"
          f"{'gain eval':>10}{'gain held':>10}{'paper':>7}")
    ta_eval, ta_held = ta.mean(EIGHT), ta.mean(held)
    for m in models:
        if m.name not in PAPER and "steps" not in m.notes:
            continue
        steps = m.notes.get("steps", "")
        seconds = f"{m.notes['seconds']:.0f}" if "seconds" in m.notes else ""
        ent_eval = ent_held = ""
        if "start" in m.notes:
            s = m.notes["start"]
            ent_eval = f"{s.mean(EIGHT, 'entropy'):.3f}->{m.mean(EIGHT, 'entropy'):.3f}"
            ent_held = f"{s.mean(held, 'entropy'):.3f}->{m.mean(held, 'entropy'):.3f}"
        paper = f"{PAPER[m.name] - PAPER['task arithmetic']:+.1f}" if m.name in PAPER else ""
        print(f"{m.name:<26}{steps:>6}{seconds:>8}{ent_eval:>15}{ent_held:>15}"
              f"{100 * (m.mean(EIGHT) - ta_eval):>+10.1f}"
              f"{100 * (m.mean(held) - ta_held):>+10.1f}{paper:>7}")
    for m in models:
        if m.name == "nested MAP":
            print(f"{m.name:<26}{m.notes['evaluations']:>6}{m.notes['seconds']:>8.0f}"
                  f"{'':>30}{100 * (m.mean(EIGHT) - ta_eval):>+10.1f}"
                  f"{100 * (m.mean(held) - ta_held):>+10.1f}{'':>7}   (steps: evaluations)")
    print("gain: mean accuracy minus task arithmetic's at its best λ, points; paper: the "
          "same on CLIP ViT-B/32, 8 tasks (TA 69.1)")


if __name__ == "__main__":
    main()
