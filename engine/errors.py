"""The user-error hierarchy.

Everything a user can cause (bad files, bad options, an existing output, a
full disk) raises a subclass of :class:`FgbgError`. The CLI maps these to a
one-line message and exit code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

from pathlib import Path


class FgbgError(Exception):
    """Base class of errors the user can fix."""


class InputError(FgbgError):
    """An input file or folder is unusable.

    Args:
        path: the offending file or folder.
        reason: what is wrong with it, in a few words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ConfigError(FgbgError):
    """Options that contradict each other or the inputs."""


class StoreError(FgbgError):
    """The output store is missing, incompatible, or could not be written."""
