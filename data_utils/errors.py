"""The project's own error types: problems a user can fix, as opposed to bugs.

The command lines (``python -m dpcn_lite`` and ``python -m data_utils.prepare``) print any :class:`UserError` as one
line (the problem and the fix) and exit with status 2; every other exception is a bug and keeps its traceback. Each
type also derives from the built-in exception it refines (``ValueError``, ``FileNotFoundError``, ...), so code that
catches those keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, data, files or settings; the message says what to do."""


class BadArgumentError(UserError, ValueError):
    """A setting or argument is out of range or not one of the valid choices."""


class DataError(UserError, ValueError):
    """Input data is present but wrong (corrupt file, bad mask values, size mismatch, too few images...)."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset folder or file is missing; the message names the command that fetches it."""


class DownloadError(UserError, RuntimeError):
    """A download failed or delivered something else than the archive (short, HTML, wrong digest)."""
