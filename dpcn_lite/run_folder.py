"""A run folder that is never clobbered: recognised by a marker of ours, held by a lock while a run writes to it.

* **Ours or refused.** A run folder holds ``dpcn-lite-run.json`` (the marker, written when the folder is claimed). An
  empty or new folder is claimed; any other non-empty folder, or a path that is a file, is refused before any work.
  Folders written before the marker existed are recognised by their ``checkpoint.pt`` and ``config.json``.
* **One run at a time.** While a run writes, it holds ``.run.lock`` (an OS file lock through the ``filelock``
  package: Linux, macOS and Windows). A second run into the same folder stops at once and says which process holds it.
  The OS releases the lock when the holding process dies (a closed Colab tab, a kill), so the next run takes the
  folder over and says so.
* **Tidy.** Temp files left by a process killed mid-write (``data_utils.files.atomic_write``) are removed on claim.
* **Resume needs a run.** ``resume=True`` on a folder without ``checkpoint.pt`` is an error, not a fresh start;
  ``resume=False`` on a folder with one is an error too (add ``--resume``, or choose another folder).

Claiming is re-entrant within one process: :func:`dpcn_lite.experiment.run_experiment` claims the folder for training,
evaluation and figures, and :func:`dpcn_lite.experiment.train` inside it finds the claim already held.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from data_utils.files import atomic_write_text, remove_orphan_temp_files
from dpcn_lite.errors import RunFolderError

MARKER = "dpcn-lite-run.json"
LOCK = ".run.lock"
OWNER = ".run.owner.json"
MARKER_FORMAT = "dpcn-lite-run-1"
_held: dict[Path, int] = {}  # folders this process holds -> nesting depth


def is_run_folder(folder: Path) -> bool:
    """True for a folder a dpcn-lite run wrote (the marker, or an older run's checkpoint and config)."""
    return (folder / MARKER).is_file() or ((folder / "checkpoint.pt").is_file() and (folder / "config.json").is_file())


def check_run_folder(folder: str | os.PathLike[str], *, resume: bool) -> Path:
    """Refuse a folder a run must not write into; returns it as a ``Path``. Writes nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"--run-dir {folder} is a file, not a folder; choose another --run-dir.")
    has_checkpoint = (folder / "checkpoint.pt").is_file()
    if resume and not has_checkpoint:
        raise RunFolderError(f"Nothing to resume: {folder} has no checkpoint.pt (a run writes one at the end of each "
                             "epoch). Check the --run-dir path, or drop --resume to start a new run there.")
    contents = sorted(p.name for p in folder.iterdir() if p.name not in (LOCK, OWNER)) if folder.is_dir() else []
    if contents and not is_run_folder(folder):
        names = contents[:3]
        raise RunFolderError(f"{folder} is not empty and is not a dpcn-lite run folder (it holds {names}...); "
                             "choose a new or empty --run-dir so nothing of yours is overwritten.")
    if has_checkpoint and not resume:
        raise RunFolderError(f"{folder} already holds a run. Add --resume to continue it, or choose another --run-dir.")
    return folder


def _owner_text() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S")})


def _describe_owner(folder: Path) -> str:
    try:
        owner = json.loads((folder / OWNER).read_text())
        return f"process {owner['pid']} on {owner['host']}, since {owner['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _is_main_process() -> bool:
    """Only DDP rank 0 writes the run folder."""
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def claimed_run_folder(folder: str | os.PathLike[str], *, resume: bool, log=print) -> Iterator[Path]:
    """Check ``folder`` (:func:`check_run_folder`), lock it, mark it as ours and tidy it; release the lock on exit."""
    folder = Path(folder)
    key = folder.resolve()
    if not _is_main_process():
        yield folder
        return
    if key in _held:  # already claimed by this process (run_experiment -> train)
        _held[key] += 1
        try:
            yield folder
        finally:
            _held[key] -= 1
        return
    check_run_folder(folder, resume=resume)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunFolderError(f"Another run is writing to {folder} ({_describe_owner(folder)}). Wait for it to finish, "
                             "or choose another --run-dir.") from None
    try:
        check_run_folder(folder, resume=resume)  # again, now that no other run can change the folder
        if (folder / OWNER).is_file():
            log(f"{folder}: taking over from a run that stopped without releasing it ({_describe_owner(folder)}).")
        atomic_write_text(_owner_text(), folder / OWNER)
        removed = remove_orphan_temp_files(folder)
        if removed:
            log(f"{folder}: removed {len(removed)} temp file(s) left by an interrupted write.")
        if not (folder / MARKER).is_file():
            atomic_write_text(json.dumps({"format": MARKER_FORMAT}) + "\n", folder / MARKER)
        _held[key] = 0
        yield folder
    finally:
        _held.pop(key, None)
        (folder / OWNER).unlink(missing_ok=True)
        lock.release()
