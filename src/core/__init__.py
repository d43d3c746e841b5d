"""The algorithm modules: arrays in, arrays out (numpy, scikit-learn, pymoo).

They import each other and map_common only: no torch, no model layer, no run
directory. The expensive part is an injected callable or evaluator."""
