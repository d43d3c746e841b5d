"""MAP itself, in role folders (the import rule is checked by tests/test_layers.py):

core/      the algorithms: sampling, surrogates, objectives, Pareto search and picks, Bayesian
           rounds, nested merging, indicators, the front step. numpy, scikit-learn and pymoo
           only (never torch, never the model layer); the expensive part is an injected
           evaluate(C[k, T]) -> metrics.
plotting/  the figures, over arrays.
run/       a run: configuration and the mode registry, the evaluator, the run directory
           (stores, fingerprint, lock) and the writers of its files. Never imports modes/.
modes/     one module per --method's run, the sweep, and what they share (common.py).
"""
