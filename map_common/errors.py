"""The one error type a user can fix. run_MAP.py prints it as one line and exits with code 2.

Raise it only for bad input (a missing file, an unknown name, an impossible setting, a
checkpoint that does not fit). A programmer's mistake is an ordinary exception, so it keeps
its traceback.
"""


class MAPError(Exception):
    """Bad input from the user: a missing file, an unknown name, an impossible setting."""
