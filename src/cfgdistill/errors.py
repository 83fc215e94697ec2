"""Errors that come from a user's input and are shown as one line, without a traceback."""


class UserError(Exception):
    """A mistake in the user's input: the CLI prints the message and exits non-zero."""


class ExtrapolationWarning(UserWarning):
    """A student is asked for a guidance scale outside the range it was distilled on."""
