"""The one exception type users see as a one-line message (CLI exit code 2, a dialog in the app)."""


class IKDError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def one_line(exc: BaseException) -> str:
    """An unexpected exception in one line, for a dialog or a log: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
