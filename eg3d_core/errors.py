"""The one exception type the library raises for bad checkpoints and bad input."""


class CheckpointError(Exception):
    """A checkpoint cannot be used: wrong format, truncated, unsupported config or unsafe content.

    The message is a single line meant to be shown to a user as is.
    """
