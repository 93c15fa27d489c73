"""Files that are never left half-written, and strict JSON: the write primitives every part of the project uses.

:func:`atomic_write` writes to a temporary file in the target's folder, flushes it to disk, renames it over the target
with ``os.replace`` (atomic on POSIX and Windows) and then flushes the folder entry too, so that after a crash, a full
disk or a kill the target holds either the old or the new content, never a mixture. Temporary files are named
``.<target>.<random>.tmp``; a process killed between creating and renaming one leaves it behind, and
:func:`remove_orphan_temp_files` clears them up at the start of the next run.

:func:`strict_json` refuses to write ``NaN`` or ``Infinity`` (they are not JSON): non-finite floats become ``null``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"


def _default_file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give (mkstemp creates 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO], None], mode: str = "wb") -> Path:
    """Call ``write(file)`` on a temp file in ``path``'s folder, fsync it, ``os.replace`` it onto ``path``, fsync the
    folder. A crash or an exception at any point leaves the old file untouched; a partial temp file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(handle, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, _default_file_mode())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write a text file (JSON, a list) atomically, like :func:`atomic_write`."""
    return atomic_write(path, lambda file: file.write(text), "w")


def remove_orphan_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files :func:`atomic_write` left in ``folder`` when a process was killed mid-write."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for path in folder.glob(f".*{TEMP_SUFFIX}"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def strict_json(value: Any, **dumps_options: Any) -> str:
    """``json.dumps`` that writes valid JSON only: NaN and ±Infinity become ``null`` (Python's default writes ``NaN``)."""
    return json.dumps(_finite(value), allow_nan=False, **dumps_options)
