"""The model layer: everything that touches torch and checkpoints."""
