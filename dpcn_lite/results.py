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
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from data_utils.files import atomic_write_text, strict_json

RESULTS_FORMAT = "dpcn-lite-results-1"
KEY_FIELDS = ("row", "seed", "shots", "supports", "fusion", "classes", "budget", "benchmark", "preset", "fold",
              "test_episodes", "test_seed")
"""What makes two records the same evaluation: a record with the key of one already in the file is not added.
``classes`` is absent on the protocol's evaluations (the fold's novel classes) and ``"base"`` on the transfer check
(the same trained model on the base classes of the test images)."""


def packaged_results_path() -> Path:
    """The copy of ``docs/results.json`` inside the installed package (``dpcn_lite/data/results.json``)."""
    return Path(__file__).resolve().parent / "data" / "results.json"


BENCHMARKS = ("model", "training", "data")
"""The CPU benchmarks whose results ship with the package (``benchmarks/results/<name>.json`` copied as
``dpcn_lite/data/benchmark_<name>.json``), so notebook 09 reads them after a plain ``pip install``."""


def packaged_benchmark_path(name: str) -> Path:
    """The packaged copy of ``benchmarks/results/<name>.json``; ``name`` is one of :data:`BENCHMARKS`."""
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark {name!r}: choose one of {', '.join(BENCHMARKS)}")
    return Path(__file__).resolve().parent / "data" / f"benchmark_{name}.json"


def load_benchmark(name: str) -> dict[str, Any] | None:
    """The shipped results of benchmark ``name`` (see :data:`BENCHMARKS`), or None when they were never recorded."""
    path = packaged_benchmark_path(name)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


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


# ======================================================================================================================
# Statistics: paired differences per training seed, with a 95 % t-interval
# ======================================================================================================================

T_975: tuple[float, ...] = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
                            2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739,
                            2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)
"""Student's t quantile 0.975 (two-sided 95 %) for 1 to 30 degrees of freedom, to four decimals."""
Z_975 = 1.959964


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom: the table up to 30, then the Cornish-Fisher
    expansion around the normal quantile (error below 1e-4 from 31 on)."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values and its 95 % t-interval (n − 1 degrees of freedom); no interval for one value."""

    mean: float
    n: int
    half_width: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def verdict(self) -> str:
        """``above zero``, ``below zero``, ``straddles zero``, or ``one seed`` (no interval)."""
        if self.half_width is None:
            return "one seed"
        if self.low > 0:
            return "above zero"
        if self.high < 0:
            return "below zero"
        return "straddles zero"

    def text(self, digits: int = 1) -> str:
        """``+2.0 [-2.3, +6.3]`` (signed), or ``+2.0 (one seed)``."""
        if self.half_width is None:
            return f"{self.mean:+.{digits}f} (one seed)"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def t_interval(values: Sequence[float]) -> Interval:
    """Mean and 95 % t-interval of ``values``: mean ± t(0.975, n − 1) · s / √n, with s the sample std."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("t_interval needs at least one value")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, 1, None)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return Interval(mean, n, t_quantile_975(n - 1) * math.sqrt(variance / n))


SETTING_FIELDS = ("budget", "benchmark", "preset", "fold", "test_episodes", "test_seed")
"""What must agree for two records to be compared: the same training budget, benchmark and test protocol."""


def setting_key(record: dict[str, Any]) -> str:
    """The setting of a record (:data:`SETTING_FIELDS`) as one comparable string."""
    return json.dumps({k: record.get(k) for k in SETTING_FIELDS}, sort_keys=True)


def group_by_setting(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by :func:`setting_key`, in the order each setting first appears."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(setting_key(record), []).append(record)
    return groups


def scores(records: Iterable[dict[str, Any]], row: str, *, shots: int = 1, supports: str = "own",
           fusion: str | None = None, metric: str = "mIoU", classes: str | None = None) -> dict[int, float]:
    """``{training seed: metric}`` of one row evaluated one way (records of one setting; a repeat keeps the first).

    1-shot records have no fusion; ``fusion=None`` with ``shots > 1`` is refused, since every 5-shot record names one.
    ``classes=None`` reads the protocol's evaluations (novel classes); ``"base"`` the base-class transfer check.
    """
    if shots > 1 and fusion is None:
        raise ValueError("a k-shot score needs its fusion (pool, mask_avg, vote or or)")
    found: dict[int, float] = {}
    for r in records:
        if r.get("row") == row and r.get("shots") == shots and r.get("supports") == supports \
                and (r.get("fusion") if shots > 1 else None) == fusion and r.get("classes") == classes \
                and r.get(metric) is not None:
            found.setdefault(int(r["seed"]), float(r[metric]))
    return found


@dataclass(frozen=True)
class Paired:
    """``a − b`` per training seed present in both, and the interval of those differences."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]

    @property
    def interval(self) -> Interval | None:
        return t_interval(self.differences) if self.differences else None


def paired_difference(a: dict[int, float], b: dict[int, float]) -> Paired:
    """Differences ``a[seed] − b[seed]`` over the seeds both hold (sorted by seed)."""
    seeds = tuple(sorted(set(a) & set(b)))
    return Paired(seeds, tuple(a[s] - b[s] for s in seeds))


def mean_and_sample_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
