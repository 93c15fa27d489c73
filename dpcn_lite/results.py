"""The results file of the synthetic benchmark (``docs/results.json``): its records, and the statistics that rank them.

Each finished evaluation of ``scripts/run_synthetic_results.py`` is one record: which row (model and ablation), which
training seed, how it was evaluated (``shots``, ``supports`` own or foreign, k-shot ``fusion``), on what budget and
benchmark, and its scores (``mIoU``, ``FB-IoU``, per-class IoU in percent; ``hole_fill`` and ``body_fill`` as
fractions). The file is a JSON object ``{"records": [...]}``; several processes append to it at once, so every
append happens under a file lock, re-reads the file inside the lock and writes it atomically.

A copy ships with the package (:func:`packaged_results_path`), so notebook 09 reads it after a ``pip install``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from data_utils.files import atomic_write_text, strict_json

RESULTS_FORMAT = "dpcn-lite-results-1"
KEY_FIELDS = ("row", "seed", "shots", "supports", "fusion", "budget", "benchmark", "preset", "fold",
              "test_episodes", "test_seed")
"""What makes two records the same evaluation: a record with the key of one already in the file is not added."""


def packaged_results_path() -> Path:
    """The copy of ``docs/results.json`` inside the installed package (``dpcn_lite/data/results.json``)."""
    return Path(__file__).resolve().parent / "data" / "results.json"


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file next to a results file: ``.results.json.lock``."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def load_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a results file (an object ``{"records": [...]}`` or a bare list); ``[]`` when it is missing."""
    path = Path(path)
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    records = data.get("records") if isinstance(data, dict) else data
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path} is not a results file: expected {{\"records\": [...]}} or a list of records.")
    return records


def record_key(record: dict[str, Any]) -> str:
    """The identity of an evaluation (:data:`KEY_FIELDS`) as one comparable string."""
    return json.dumps({k: record.get(k) for k in KEY_FIELDS}, sort_keys=True)


def results_text(records: Sequence[dict[str, Any]]) -> str:
    """The file's text: strict JSON (NaN becomes null), one record per line so that diffs stay readable."""
    body = ",\n".join("    " + strict_json(r, sort_keys=True) for r in records)
    return (f'{{\n  "format": "{RESULTS_FORMAT}",\n  "records": [\n{body}\n  ]\n}}\n' if records
            else f'{{\n  "format": "{RESULTS_FORMAT}",\n  "records": []\n}}\n')


def append_records(path: str | os.PathLike[str], new: Iterable[dict[str, Any]],
                   copies: Sequence[str | os.PathLike[str]] = (), timeout: float = 600.0) -> list[dict[str, Any]]:
    """Add the records whose key is not in the file yet; write the file (and identical ``copies``) atomically.

    Runs under a lock on :func:`lock_path`, re-reading the file inside it, so processes appending at the same time
    never lose each other's records. Returns the records actually added."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path(path), timeout=timeout):
        records = load_records(path)
        known = {record_key(r) for r in records}
        added = []
        for record in new:
            key = record_key(record)
            if key not in known:
                known.add(key)
                added.append(record)
        if added or not path.is_file():
            text = results_text(records + added)
            atomic_write_text(text, path)
            for copy in copies:
                atomic_write_text(text, copy)
        return added


def recorded_keys(path: str | os.PathLike[str]) -> set[str]:
    """The keys of every record in a results file."""
    return {record_key(r) for r in load_records(path)}
