"""The prepare command: resumable verified downloads, extraction, list derivation (no network: fake openers)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.request
from pathlib import Path

import pytest
from data_fixtures import write_pascal_fixture

from data_utils import prepare
from data_utils.prepare import REGISTRY, Resource, download, extract, fetch, main


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, status: int):
        super().__init__(data)
        self.status = status
        self.headers = {"Content-Length": str(len(data))}

    def getcode(self) -> int:
        return self.status


class RangeServer:
    """Serves one payload, honouring ``Range: bytes=N-`` like an HTTP server; records the requests."""

    def __init__(self, payload: bytes, honour_range: bool = True):
        self.payload = payload
        self.honour_range = honour_range
        self.requests: list[dict] = []

    def __call__(self, request: urllib.request.Request) -> FakeResponse:
        headers = dict(request.header_items())
        self.requests.append(headers)
        rng = headers.get("Range")
        if rng and self.honour_range:
            start = int(rng.split("=")[1].rstrip("-"))
            return FakeResponse(self.payload[start:], 206)
        return FakeResponse(self.payload, 200)


PAYLOAD = bytes(range(256)) * 5000


def _resource(sha: str | None) -> Resource:
    return Resource(url="http://example.invalid/data.bin", filename="data.bin", sha256=sha, extract_to=".")


def test_download_resumes_a_partial_file_with_a_range_request(tmp_path):
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:300_000])
    server = RangeServer(PAYLOAD)
    path = download(_resource(sha), tmp_path, opener=server, log=lambda m: None)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[0]["Range"] == "bytes=300000-"
    # verified files are skipped: no further request
    download(_resource(sha), tmp_path, opener=server, log=lambda m: None)
    assert len(server.requests) == 1


def test_download_restarts_when_the_server_ignores_range(tmp_path):
    (tmp_path / "data.bin.part").write_bytes(b"garbage" * 10)
    path = download(_resource(hashlib.sha256(PAYLOAD).hexdigest()), tmp_path,
                    opener=RangeServer(PAYLOAD, honour_range=False), log=lambda m: None)
    assert path.read_bytes() == PAYLOAD


def test_wrong_digest_deletes_the_file_and_says_so(tmp_path):
    with pytest.raises(RuntimeError, match="does not match"):
        download(_resource("0" * 64), tmp_path, opener=RangeServer(PAYLOAD), log=lambda m: None)
    assert not (tmp_path / "data.bin").exists()


def test_unknown_digest_is_reported_not_invented(tmp_path):
    messages: list[str] = []
    download(_resource(None), tmp_path, opener=RangeServer(PAYLOAD), log=messages.append)
    assert any(hashlib.sha256(PAYLOAD).hexdigest() in m and "no sha256 recorded" in m for m in messages)


def test_fetch_over_file_url_extracts_selected_members_once(tmp_path, monkeypatch):
    archive_src = tmp_path / "src" / "bench.tgz"
    archive_src.parent.mkdir()
    with tarfile.open(archive_src, "w:gz") as tf:
        for name, text in [("benchmark_RELEASE/dataset/train.txt", "a\nb\n"),
                           ("benchmark_RELEASE/dataset/val.txt", "c\n"), ("benchmark_RELEASE/big.bin", "x" * 100)]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    sha = hashlib.sha256(archive_src.read_bytes()).hexdigest()
    members = ("benchmark_RELEASE/dataset/train.txt", "benchmark_RELEASE/dataset/val.txt")
    monkeypatch.setitem(REGISTRY, "pascal", (Resource(archive_src.as_uri(), "bench.tgz", sha, ".", members),))
    root = tmp_path / "data"
    fetch("pascal", root, log=lambda m: None)
    assert (root / "benchmark_RELEASE/dataset/train.txt").read_text() == "a\nb\n"
    assert not (root / "benchmark_RELEASE/big.bin").exists()
    (root / "benchmark_RELEASE/dataset/train.txt").unlink()
    fetch("pascal", root, log=lambda m: None)  # already extracted: nothing is redone
    assert not (root / "benchmark_RELEASE/dataset/train.txt").exists()


def test_extract_reports_missing_members(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("other.txt")
        tf.addfile(info, io.BytesIO(b""))
    with pytest.raises(RuntimeError, match="lacks the expected members"):
        extract(archive, tmp_path / "out", ("wanted.txt",))


def test_registry_has_one_entry_per_file_and_no_invented_digests():
    for dataset, resources in REGISTRY.items():
        assert len({r.filename for r in resources}) == len(resources)
        for r in resources:
            assert r.url.startswith("http") and (r.sha256 is None or len(r.sha256) == 64)


def test_cli_derives_pascal_lists_from_extracted_data(tmp_path, capsys):
    write_pascal_fixture(tmp_path)
    assert main(["pascal", "--root", str(tmp_path), "--skip-download"]) == 0
    assert (tmp_path / "lists/pascal/train.txt").read_text().split() == ["2007_000001", "2007_000002", "2008_000005"]
    assert (tmp_path / "lists/pascal/class_index_train.json").is_file()
    assert "done: pascal" in capsys.readouterr().out


def test_data_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DPCN_DATA", str(tmp_path / "elsewhere"))
    assert prepare.default_data_root() == Path(tmp_path / "elsewhere")
    monkeypatch.delenv("DPCN_DATA")
    assert prepare.default_data_root() == Path("data")
