"""The one exception type users see as a one-line message (CLI exit code 2, a dialog in the app)."""


class IKDError(Exception):
    """A problem with the user's input or environment, explained in one line."""
