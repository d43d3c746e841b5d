"""MAP algorithms: sampling, surrogates, Pareto search, Bayesian rounds, nested merging.

Modules here import numpy, scikit-learn and pymoo only (never torch); they see the
expensive part as a function evaluate(C[k, T]) -> metrics.
"""
