"""Downloads that can be trusted, probed with faults from a real HTTP server on 127.0.0.1 (via urllib's urlopen).

Each test starts a ``ThreadingHTTPServer`` on a free port whose handler misbehaves on purpose: it closes the connection
before the promised ``Content-Length``, serves an HTML page with status 200, answers 416 to a Range request for a
complete ``.part`` or stalls. Retries sleep through an injected function, so the whole file runs in about a second.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data_utils.download import Resource, download, verify
from data_utils.errors import DownloadError


def tar_bytes(files: dict[str, bytes]) -> bytes:
    """A real (uncompressed) tar archive holding ``files``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


ARCHIVE = tar_bytes({f"folder/file_{i}.bin": bytes([i]) * 20_000 for i in range(10)})
Respond = Callable[[BaseHTTPRequestHandler, int, int], None]  # (handler, Range start or -1, request number)


@contextmanager
def serve(respond: Respond) -> Iterator[tuple[str, list[dict]]]:
    """Run a real HTTP server whose GET handler is ``respond``; yields (url, the headers of every request)."""
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            requests.append(dict(self.headers))
            rng = self.headers.get("Range")
            respond(self, int(rng.split("=")[1].rstrip("-")) if rng else -1, len(requests))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/archive.tar", requests
    finally:
        server.shutdown()
        server.server_close()


def send(handler: BaseHTTPRequestHandler, payload: bytes, start: int, cut: int | None = None,
         content_type: str = "application/x-tar") -> None:
    """Serve ``payload`` (from ``start`` with 206 when a Range came); ``cut``: close after that many body bytes."""
    body = payload[max(start, 0):]
    handler.send_response(206 if start > 0 else 200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    if start > 0:
        handler.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
    handler.end_headers()
    handler.wfile.write(body if cut is None else body[:cut])


def resource(url: str, sha256: str | None = None) -> Resource:
    return Resource(url=url, filename="archive.tar", sha256=sha256, extract_to=".")


QUIET = {"log": lambda message: None, "sleep": lambda seconds: None}


def test_a_connection_dropped_mid_body_keeps_the_part_and_says_to_rerun(tmp_path: Path) -> None:
    """The server promises the whole archive, sends 50,000 bytes and closes: urllib returns the short body without
    an error, so only the byte count against Content-Length can notice."""
    drop = [True]

    def respond(handler, start, n):
        send(handler, ARCHIVE, start, cut=50_000 if drop[0] else None)

    sha = hashlib.sha256(ARCHIVE).hexdigest()
    with serve(respond) as (url, requests):
        with pytest.raises(DownloadError, match=r"(?s)50000 of \d+ bytes.*run the command again"):
            download(resource(url, sha), tmp_path, retries=0, **QUIET)
        assert (tmp_path / "archive.tar.part").read_bytes() == ARCHIVE[:50_000]
        assert not (tmp_path / "archive.tar").exists() and not (tmp_path / "archive.tar.verified").exists()
        drop[0] = False
        path = download(resource(url, sha), tmp_path, retries=0, **QUIET)
    assert path.read_bytes() == ARCHIVE
    assert requests[1]["Range"] == "bytes=50000-"  # the rerun resumed


def test_a_short_read_is_retried_with_a_backoff_and_resumed(tmp_path: Path) -> None:
    sleeps: list[float] = []

    def respond(handler, start, n):
        send(handler, ARCHIVE, start, cut=30_000 if n == 1 else None)

    with serve(respond) as (url, requests):
        path = download(resource(url), tmp_path, retries=2, backoff_s=0.5, log=lambda m: None, sleep=sleeps.append)
    assert path.read_bytes() == ARCHIVE
    assert [r.get("Range") for r in requests] == [None, "bytes=30000-"]
    assert sleeps == [0.5]


@pytest.mark.parametrize("content_type, body", [
    ("text/html; charset=utf-8", b"<html><body>Moved. Sign in to continue.</body></html>"),
    ("application/octet-stream", b"<!DOCTYPE html>\n<html><head><title>Error</title></head></html>"),
])
def test_an_html_page_served_with_status_200_is_refused(tmp_path: Path, content_type: str, body: bytes) -> None:
    with serve(lambda handler, start, n: send(handler, body, -1, content_type=content_type)) as (url, _):
        with pytest.raises(DownloadError, match="HTML page"):
            download(resource(url), tmp_path, retries=0, **QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing kept, nothing marked verified


def test_a_416_for_a_complete_part_finishes_the_download(tmp_path: Path) -> None:
    """A ``.part`` complete from an earlier run (no length remembered): the server answers the Range request with 416
    and ``Content-Range: bytes */N``; N equals the part's size, so the part is the file."""
    (tmp_path / "archive.tar.part").write_bytes(ARCHIVE)

    def respond(handler, start, n):
        if start >= len(ARCHIVE):
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{len(ARCHIVE)}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        else:
            send(handler, ARCHIVE, start)

    with serve(respond) as (url, requests):
        path = download(resource(url, hashlib.sha256(ARCHIVE).hexdigest()), tmp_path, retries=0, **QUIET)
    assert path.read_bytes() == ARCHIVE and len(requests) == 1
    assert (tmp_path / "archive.tar.verified").is_file()


def test_a_complete_part_with_its_remembered_length_needs_no_request(tmp_path: Path) -> None:
    (tmp_path / "archive.tar.part").write_bytes(ARCHIVE)
    (tmp_path / "archive.tar.part.size").write_text(f"{len(ARCHIVE)}\n")  # written when the first response came

    def no_network(request, timeout=None):
        raise AssertionError("no request expected")

    path = download(resource("http://127.0.0.1:9/archive.tar"), tmp_path, opener=no_network, **QUIET)
    assert path.read_bytes() == ARCHIVE and not (tmp_path / "archive.tar.part.size").exists()


def test_a_missing_file_is_not_retried(tmp_path: Path) -> None:
    def respond(handler, start, n):
        handler.send_error(404, "Not Found")

    with serve(respond) as (url, requests):
        with pytest.raises(DownloadError, match="answered HTTP 404.*check the URL in data_utils.prepare.REGISTRY"):
            download(resource(url), tmp_path, retries=3, **QUIET)
    assert len(requests) == 1 and not any(tmp_path.iterdir())


def test_a_stalled_server_times_out_and_is_retried(tmp_path: Path) -> None:
    release = threading.Event()

    def respond(handler, start, n):
        release.wait(5)  # never answers while the client waits

    try:
        with serve(respond) as (url, requests):
            with pytest.raises(DownloadError, match="timed out"):
                download(resource(url), tmp_path, retries=1, timeout_s=0.2, **QUIET)
            assert len(requests) == 2
    finally:
        release.set()


def test_without_a_digest_a_file_that_is_no_archive_is_deleted_not_marked(tmp_path: Path) -> None:
    """The old behaviour marked any file verified when no digest was recorded, so every rerun skipped the download
    and failed at extraction forever."""
    payload = b"\x00\x01 not an archive at all " * 100
    with serve(lambda handler, start, n: send(handler, payload, start, content_type="application/zip")) as (url, _):
        with pytest.raises(DownloadError, match=r"archive\.tar is not a readable tar or zip archive.*deleted"):
            download(resource(url), tmp_path, retries=0, **QUIET)
    assert not (tmp_path / "archive.tar").exists() and not (tmp_path / "archive.tar.verified").exists()


@pytest.mark.parametrize("payload", [ARCHIVE, zip_bytes({"a/b.txt": b"hello" * 1000, "c.txt": b"x"})],
                         ids=["tar", "zip"])
def test_without_a_digest_a_complete_archive_is_marked_and_then_skipped(tmp_path: Path, payload: bytes) -> None:
    with serve(lambda handler, start, n: send(handler, payload, start)) as (url, requests):
        download(resource(url), tmp_path, retries=0, **QUIET)
        download(resource(url), tmp_path, retries=0, **QUIET)
    assert len(requests) == 1 and (tmp_path / "archive.tar").read_bytes() == payload


@pytest.mark.parametrize("payload", [ARCHIVE[: len(ARCHIVE) // 2],
                                     zip_bytes({"a.txt": b"hello" * 1000})[:-30]], ids=["tar", "zip"])
def test_without_a_digest_a_truncated_archive_is_refused(tmp_path: Path, payload: bytes) -> None:
    """The server sends what it has (Content-Length matches), but the archive itself is cut short."""
    with serve(lambda handler, start, n: send(handler, payload, start)) as (url, _):
        with pytest.raises(DownloadError, match="not a readable tar or zip archive"):
            download(resource(url), tmp_path, retries=0, **QUIET)
    assert not (tmp_path / "archive.tar").exists()


def test_a_file_with_an_old_style_marker_is_verified_again(tmp_path: Path) -> None:
    """``.verified`` used to hold just a sha256, written even when nothing was checked: such a file is re-verified."""
    target = tmp_path / "archive.tar"
    target.write_bytes(b"<!DOCTYPE html><html>404</html>")
    (tmp_path / "archive.tar.verified").write_text(hashlib.sha256(target.read_bytes()).hexdigest() + "\n")
    with pytest.raises(DownloadError, match=r"deleted.*run the command again"):
        download(resource("http://127.0.0.1:9/archive.tar"), tmp_path, retries=0, **QUIET)
    assert not target.exists() and not (tmp_path / "archive.tar.verified").exists()


def test_a_verified_file_changed_afterwards_is_verified_again(tmp_path: Path) -> None:
    target = tmp_path / "archive.tar"
    target.write_bytes(ARCHIVE)
    verify(target, resource("http://127.0.0.1:9/archive.tar"), log=lambda m: None)
    target.write_bytes(ARCHIVE[: len(ARCHIVE) // 3])  # cut short later: the marker no longer describes this file
    with pytest.raises(DownloadError, match="not a readable tar or zip archive"):
        download(resource("http://127.0.0.1:9/archive.tar"), tmp_path, retries=0, **QUIET)
