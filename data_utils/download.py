"""Downloads that can be trusted: resumed, counted, retried, refused when they are HTML, verified before they are used.

A download goes to ``<file>.part``; the expected total length is remembered beside it in ``<file>.part.size`` as soon
as the first response arrives, so a rerun resumes with an HTTP Range request and a part that is already complete is
finished without any request (a server's 416 whose ``Content-Range: bytes */N`` equals the part's size counts as
complete too). Every response is counted against its ``Content-Length``: urllib returns a short body without an error
when the connection drops, so only the count notices. Connection errors, timeouts and short reads are retried a few
times with a growing pause; the part is kept, and the message says to run the command again to resume.

A finished file is marked verified (``<file>.verified``, JSON: size, mtime, sha256, md5) only after its sha256 or MD5
matches the registry, or, where no digest is recorded, after the archive opens and lists completely. A file that
fails is deleted with a message; a file whose marker is missing, old-style or describes another size or mtime is
verified again, never skipped.

Why our own code: torchvision's ``download_url`` restarts from zero (no Range), sets no timeout, takes no opener to
test with and does not count bytes; pooch is not a dependency. sha256 and MD5 are computed in one pass over the file.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .errors import DownloadError
from .files import atomic_write_text, strict_json

RETRIES = 3
BACKOFF_S = 2.0  # pause before the first retry; doubled for each further one
TIMEOUT_S = 60.0  # per blocking socket operation (connect, each read), not for the whole file
CHUNK = 1 << 20
DEFAULT_COMMAND = "python -m data_utils.prepare"
_HTML_STARTS = (b"<!doctype", b"<html")

Opener = Callable[..., Any]  # urllib.request.urlopen(request, timeout=...) or a stand-in in tests
Log = Callable[[str], None]


@dataclass(frozen=True)
class Resource:
    """One file to download: where from, its digest, where it unpacks (or is placed), and which members to keep.

    ``archive=False`` marks a plain file (a list, say): it is copied to ``extract_to/filename`` under the data root
    instead of being unpacked. Such a file cannot prove itself by opening as an archive, so it needs a digest."""

    url: str
    filename: str
    sha256: str | None
    extract_to: str  # folder under the data root
    members: tuple[str, ...] | None = None  # archive members to extract (None = all)
    md5: str | None = None  # published MD5 where the host only gives that
    archive: bool = True  # False: a plain file, placed as it is

    def __post_init__(self) -> None:
        if not self.archive and self.sha256 is None and self.md5 is None:
            raise ValueError(f"{self.filename}: a plain (non-archive) file needs a sha256 or an MD5 to be verified")
        if not self.archive and self.members is not None:
            raise ValueError(f"{self.filename}: members name parts of an archive; a plain file has none")


class _Transient(Exception):
    """A failure worth retrying (connection, timeout, short read, 5xx); the .part keeps what arrived."""


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file in one pass: a multi-GB archive is read once, not once per digest."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def extracted_marker(path: Path) -> Path:
    return path.with_name(path.name + ".extracted")


def _size_file(part: Path) -> Path:
    return part.with_name(part.name + ".size")


def _discard(path: Path) -> None:
    """Remove a file with its markers: a later run starts from a clean slate."""
    for p in (path, verified_marker(path), extracted_marker(path)):
        p.unlink(missing_ok=True)


def is_verified(path: Path, resource: Resource) -> bool:
    """True when ``path``'s marker describes this very file (size, mtime) and the registry's current digests."""
    try:
        data = json.loads(verified_marker(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return (isinstance(data, dict) and data.get("size") == stat.st_size and data.get("mtime_ns") == stat.st_mtime_ns
            and resource.sha256 in (None, data.get("sha256")) and resource.md5 in (None, data.get("md5")))


def archive_problem(path: Path) -> str | None:
    """None when ``path`` is a zip that lists completely or a tar whose members all read; else what is wrong.

    Zip CRCs are not tested here (that would decompress everything once more); extraction checks them."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            return str(err)
        size = path.stat().st_size
        if not infos or any(info.header_offset + info.compress_size > size for info in infos):
            return "empty, or members end beyond the end of the file"
        return None
    try:
        with tarfile.open(path) as tf:
            count = sum(1 for _ in tf)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        return (str(err).splitlines() or [type(err).__name__])[0]
    return None if count else "no members"


def verify(path: Path, resource: Resource, log: Log = print, command: str = DEFAULT_COMMAND) -> None:
    """Check ``path`` against the recorded digests (or, with none, as an archive); mark it verified or delete it."""
    sha, md5 = file_digests(path)
    if resource.sha256 is not None and sha != resource.sha256:
        problem = f"has sha256 {sha}, not the registry's {resource.sha256}"
    elif resource.md5 is not None and md5 != resource.md5:
        problem = f"has md5 {md5}, not the published {resource.md5}"
    elif resource.sha256 is None and resource.md5 is None and (reason := archive_problem(path)):
        problem = f"is not a readable tar or zip archive ({reason})"
    else:
        problem = None
    if problem:
        _discard(path)
        raise DownloadError(f"{path.name} {problem}; {path} was deleted: run the command again to download it "
                            f"({command})")
    if resource.sha256 is None:
        log(f"{path.name}: no sha256 recorded in the registry; computed sha256 = {sha}")
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha, "md5": md5}
    atomic_write_text(strict_json(record) + "\n", verified_marker(path))


def download(resource: Resource, folder: Path, opener: Opener = urllib.request.urlopen, log: Log = print, *,
             command: str = DEFAULT_COMMAND, retries: int = RETRIES, backoff_s: float = BACKOFF_S,
             timeout_s: float = TIMEOUT_S, sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download ``resource`` into ``folder`` (resuming its ``.part``), retrying transient failures, then verify.

    ``command`` is the command the messages tell the user to rerun; ``sleep`` and ``retries`` are injectable so
    tests of the retry path take no time."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / resource.filename
    if target.is_file():
        if not is_verified(target, resource):
            log(f"{target.name}: present but not verified yet; checking it")
            verify(target, resource, log, command)
        return target
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(resource, part, opener, timeout_s, command)
            break
        except _Transient as err:
            if attempt == retries:
                kept = f"the partial download {part} is kept: " if part.is_file() else ""
                raise DownloadError(f"{resource.filename}: {err} ({attempt + 1} attempts); {kept}run the command "
                                    f"again to resume ({command})") from err
            pause = backoff_s * 2**attempt
            log(f"{resource.filename}: {err}; retrying in {pause:g} s")
            sleep(pause)
    part.replace(target)
    _size_file(part).unlink(missing_ok=True)
    extracted_marker(target).unlink(missing_ok=True)  # new bytes: extract again
    verify(target, resource, log, command)
    return target


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _range_total(content_range: str | None) -> int | None:
    """N of ``Content-Range: bytes a-b/N`` or ``bytes */N``; None when absent or unknown (``*``)."""
    try:
        return int(str(content_range).rpartition("/")[2])
    except ValueError:
        return None


def _fetch(resource: Resource, part: Path, opener: Opener, timeout_s: float, command: str) -> None:
    """One request: append what the server sends to ``part``; raise ``_Transient`` when it is worth another try."""
    have = part.stat().st_size if part.is_file() else 0
    total = _read_int(_size_file(part))
    if total is not None and have == total:
        return  # complete already (e.g. killed before the rename)
    if total is not None and have > total:
        part.unlink()
        have = 0
    request = urllib.request.Request(resource.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = opener(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            if _range_total(err.headers.get("Content-Range")) == have:
                return  # the part is the whole file
            part.unlink()
            raise _Transient("the server cannot resume the partial download; starting again") from err
        if err.code in (408, 429) or err.code >= 500:
            raise _Transient(f"HTTP {err.code} {err.reason}") from err
        raise DownloadError(f"{resource.url} answered HTTP {err.code} {err.reason}: the file may have moved; check the "
                            "URL in data_utils.prepare.REGISTRY") from err
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _Transient(str(err) or type(err).__name__) from err
    with response:
        _receive(resource, part, response, have, command)


def _receive(resource: Resource, part: Path, response: Any, have: int, command: str) -> None:
    status = getattr(response, "status", None) or response.getcode() or 200
    headers = response.headers
    length = _read_length(headers.get("Content-Length"))
    if have and status == 206:
        start = str(headers.get("Content-Range", "")).removeprefix("bytes ").partition("-")[0]
        if start.isdigit() and int(start) != have:
            part.unlink()
            raise _Transient(f"the server resumed at byte {start}, not {have}; starting again")
        total = _range_total(headers.get("Content-Range")) or (have + length if length is not None else None)
    else:  # a full response: the server ignored Range (or none was sent); start again
        have, total = 0, length
    try:
        first = response.read(CHUNK)
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _Transient(str(err) or type(err).__name__) from err
    content_type = str(headers.get("Content-Type", "")).lower()
    if "text/html" in content_type or (have == 0 and first.lstrip()[:9].lower().startswith(_HTML_STARTS)):
        raise DownloadError(f"{resource.url} sent an HTML page instead of {resource.filename} (an error, login or "
                            "moved-file page); nothing was saved. Check the URL in data_utils.prepare.REGISTRY, or "
                            f"fetch the file in a browser, put it at {part.with_suffix('')} and run the command "
                            f"again ({command})")
    if total is not None:
        atomic_write_text(f"{total}\n", _size_file(part))
    got = 0
    with open(part, "ab" if have else "wb") as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                          desc=resource.filename) as bar:
        block = first
        try:
            while block:
                out.write(block)
                got += len(block)
                bar.update(len(block))
                block = response.read(CHUNK)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
            raise _Transient(f"{err or type(err).__name__} after {have + got} bytes") from err
    if (length is not None and got < length) or (total is not None and have + got < total):
        expected = total if total is not None else have + length
        raise _Transient(f"the connection closed after {have + got} of {expected} bytes")


def _read_length(value: str | None) -> int | None:
    return int(value) if value is not None and str(value).strip().isdigit() else None


__all__ = ["BACKOFF_S", "RETRIES", "TIMEOUT_S", "Resource", "archive_problem", "download", "file_digests",
           "is_verified", "verify"]
