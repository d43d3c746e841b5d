"""What both packages share: the user-error type and atomic file writes.

``src/`` (the algorithms) and ``task_vectors/`` (the model layer) both import this package;
it imports neither, so the model layer never depends on the algorithm package.
"""
