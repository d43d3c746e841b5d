"""Errors a user can fix. run_MAP.py prints them as one line and exits with code 2."""


class MAPError(Exception):
    """Bad input from the user: a missing file, an unknown name, an impossible setting."""
