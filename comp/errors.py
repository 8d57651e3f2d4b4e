"""The one exception a user can cause: the CLI prints its message as one line and exits non-zero."""


class CompError(Exception):
    """A mistake in the user's input, config, data or store, explained in one sentence."""
