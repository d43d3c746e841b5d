"""A run: its configuration and mode registry, the evaluator it builds, its
directory (stores, fingerprint, lock) and the writers of its files."""
