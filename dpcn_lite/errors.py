"""Error types of the model side; the data side's (``DataError``, ``DatasetNotFoundError``, ...) live in
``data_utils.errors``. Every one is a :class:`UserError`: the command line prints it as one line and exits 2."""

from __future__ import annotations

from data_utils.errors import BadArgumentError, UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, corrupt, foreign, unsafe, or does not fit the model its record describes."""


class RunFolderError(UserError, RuntimeError):
    """A run folder cannot be used: it holds something else, another run is writing to it, or it has no run."""


class ResumeMismatchError(UserError, ValueError):
    """``--resume`` with settings that would change the result of the run being continued."""


class TrainingDivergedError(UserError, RuntimeError):
    """The loss became NaN or infinite; training stopped before any bad weights were saved."""


__all__ = ["BadArgumentError", "CheckpointError", "ResumeMismatchError", "RunFolderError", "TrainingDivergedError",
           "UserError"]
