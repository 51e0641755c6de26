"""The exceptions the library raises for problems a user can fix. Each message is one line, meant to be shown as is.

Front ends catch ``EG3DError`` (and only it, with ``OSError`` from the system) and print the message; anything else
is a bug and keeps its traceback.
"""


class EG3DError(Exception):
    """Base of the user-facing errors."""


class CheckpointError(EG3DError):
    """A checkpoint cannot be used: wrong format, truncated, unsupported config or unsafe content."""


class InputError(EG3DError, ValueError):
    """A value given by the user is wrong: out of range, wrong shape, wrong type, or inconsistent with the model."""


class OutputError(EG3DError, OSError):
    """An output cannot be written: missing or read-only folder, full disk."""


class NoSurfaceError(InputError):
    """Mesh extraction found no surface at the requested iso level (the message names the density range seen)."""
