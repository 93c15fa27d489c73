"""The prepare command: resumable verified downloads, extraction, list derivation, one-line user errors (no network:
fake openers here, a real local HTTP server in test_data_download.py)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.request
from pathlib import Path

import pytest
from data_fixtures import write_coco_fixture, write_pascal_fixture

from data_utils import prepare
from data_utils.errors import BadArgumentError, DataError, DatasetNotFoundError, DownloadError
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

    def __call__(self, request: urllib.request.Request, timeout: float | None = None) -> FakeResponse:
        headers = dict(request.header_items())
        self.requests.append({**headers, "timeout": timeout})
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
    assert server.requests[0]["timeout"] == prepare.download.__kwdefaults__["timeout_s"] > 0
    # verified files are skipped: no further request
    download(_resource(sha), tmp_path, opener=server, log=lambda m: None)
    assert len(server.requests) == 1


def test_download_restarts_when_the_server_ignores_range(tmp_path):
    (tmp_path / "data.bin.part").write_bytes(b"garbage" * 10)
    path = download(_resource(hashlib.sha256(PAYLOAD).hexdigest()), tmp_path,
                    opener=RangeServer(PAYLOAD, honour_range=False), log=lambda m: None)
    assert path.read_bytes() == PAYLOAD


def test_wrong_digest_deletes_the_file_and_says_so(tmp_path):
    with pytest.raises(DownloadError, match="not the registry's 0000.*was deleted: run the command again"):
        download(_resource("0" * 64), tmp_path, opener=RangeServer(PAYLOAD), log=lambda m: None)
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.verified").exists()


def test_wrong_md5_deletes_the_file(tmp_path):
    resource = Resource("http://example.invalid/data.bin", "data.bin", None, ".", md5="0" * 32)
    with pytest.raises(DownloadError, match="not the published 0000"):
        download(resource, tmp_path, opener=RangeServer(PAYLOAD), log=lambda m: None)
    assert not (tmp_path / "data.bin").exists()


def test_unknown_digest_is_reported_not_invented(tmp_path):
    messages: list[str] = []
    archive = _tar({"a.txt": "hello"})
    download(_resource(None), tmp_path, opener=RangeServer(archive), log=messages.append)
    assert any(hashlib.sha256(archive).hexdigest() in m and "no sha256 recorded" in m for m in messages)


def _tar(files: dict[str, str], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_fetch_over_file_url_extracts_selected_members_once(tmp_path, monkeypatch):
    archive_src = tmp_path / "src" / "bench.tgz"
    archive_src.parent.mkdir()
    archive_src.write_bytes(_tar({"benchmark_RELEASE/dataset/train.txt": "a\nb\n",
                                  "benchmark_RELEASE/dataset/val.txt": "c\n", "benchmark_RELEASE/big.bin": "x" * 100},
                                 "w:gz"))
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


def _plain_list(tmp_path: Path, text: str = "2008_000005\n2007_000002\n") -> tuple[Path, str]:
    source = tmp_path / "src" / "train_noval.txt"
    source.parent.mkdir(exist_ok=True)
    source.write_text(text)
    return source, hashlib.md5(source.read_bytes()).hexdigest()


def test_fetch_places_a_plain_file_verified_by_its_md5(tmp_path, monkeypatch):
    source, md5 = _plain_list(tmp_path)
    resource = Resource(source.as_uri(), "train_noval.txt", None, "benchmark_RELEASE/dataset", md5=md5, archive=False)
    monkeypatch.setitem(REGISTRY, "pascal", (resource,))
    root, requests = tmp_path / "data", []

    def opener(request, timeout=None):
        requests.append(request.full_url)
        return urllib.request.urlopen(request, timeout=timeout)

    fetch("pascal", root, opener=opener, log=lambda m: None)
    placed = root / "benchmark_RELEASE/dataset/train_noval.txt"
    assert placed.read_bytes() == source.read_bytes()
    assert (root / "downloads/train_noval.txt.verified").is_file()
    assert not (root / "downloads/train_noval.txt.extracted").exists()  # nothing was unpacked
    placed.write_text("edited by hand\n")
    fetch("pascal", root, opener=opener, log=lambda m: None)  # the verified download is placed again
    assert placed.read_bytes() == source.read_bytes() and len(requests) == 1


def test_a_plain_file_with_the_wrong_md5_is_deleted_and_not_placed(tmp_path, monkeypatch):
    source, _ = _plain_list(tmp_path)
    resource = Resource(source.as_uri(), "train_noval.txt", None, "lists", md5="0" * 32, archive=False)
    monkeypatch.setitem(REGISTRY, "pascal", (resource,))
    with pytest.raises(DownloadError, match="not the published 0000"):
        fetch("pascal", tmp_path / "data", log=lambda m: None)
    assert not (tmp_path / "data/downloads/train_noval.txt").exists()
    assert not (tmp_path / "data/lists/train_noval.txt").exists()


def test_a_plain_file_needs_a_digest_and_has_no_members():
    with pytest.raises(ValueError, match="needs a sha256 or an MD5"):
        Resource("http://example.invalid/a.txt", "a.txt", None, ".", archive=False)
    with pytest.raises(ValueError, match="a plain file has none"):
        Resource("http://example.invalid/a.txt", "a.txt", None, ".", ("x",), md5="0" * 32, archive=False)


def test_pascal_registry_fetches_sbd_train_noval_not_the_sbd_tarball():
    """The digest is the one torchvision records for the same file, not one made up here."""
    from torchvision.datasets import SBDataset

    entries = {r.filename: r for r in REGISTRY["pascal"]}
    assert "benchmark.tgz" not in entries
    noval = entries["train_noval.txt"]
    assert not noval.archive and noval.extract_to == "benchmark_RELEASE/dataset"
    assert (noval.url, noval.md5) == (SBDataset.voc_train_url, SBDataset.voc_split_md5)


def test_extract_reports_missing_members(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("other.txt")
        tf.addfile(info, io.BytesIO(b""))
    with pytest.raises(DownloadError, match=r"lacks the expected members.*delete .*a\.tar"):
        extract(archive, tmp_path / "out", ("wanted.txt",))
    assert not (tmp_path / "a.tar.extracted").exists()


def test_extracting_a_corrupt_zip_names_the_file_to_delete(tmp_path):
    """A zip whose member data is damaged lists fine but fails its CRC on extraction."""
    import zipfile

    archive = tmp_path / "masks.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("SegmentationClassAug/a.png", b"A" * 5000)
    data = bytearray(archive.read_bytes())
    data[100:110] = b"B" * 10  # inside the stored member's bytes
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match=r"masks\.zip is corrupt .*delete it and run the command again"):
        extract(archive, tmp_path / "out")


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


def test_cli_prints_one_line_and_exits_2_on_a_user_error(tmp_path, capsys):
    assert main(["pascal", "--root", str(tmp_path), "--skip-download"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert f"python -m data_utils.prepare pascal --root {tmp_path}" in err
    with pytest.raises(DatasetNotFoundError):  # --debug shows the traceback
        main(["pascal", "--root", str(tmp_path), "--skip-download", "--debug"])


def test_cli_keeps_the_traceback_of_a_bug(tmp_path, monkeypatch):
    write_pascal_fixture(tmp_path)

    def broken(*args, **kwargs):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(prepare, "derive", broken)
    with pytest.raises(KeyError):
        main(["pascal", "--root", str(tmp_path), "--skip-download"])


@pytest.mark.parametrize("make_root", [lambda t: t / "a_file", lambda t: t / "a_file" / "data"], ids=["file", "under"])
def test_cli_checks_the_root_before_writing_anything(tmp_path, capsys, make_root):
    (tmp_path / "a_file").write_text("not a folder")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["coco", "--root", str(make_root(tmp_path))]) == 2
    assert "a_file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    with pytest.raises(BadArgumentError):
        prepare.check_root(make_root(tmp_path), must_exist=False)


def test_unknown_dataset_is_a_bad_argument(tmp_path):
    with pytest.raises(BadArgumentError, match="unknown dataset"):
        fetch("imagenet", tmp_path)


def test_coco_prepare_fails_when_the_images_are_missing(tmp_path, capsys):
    """Annotations present, image folders empty: the command used to say "ready"."""
    write_coco_fixture(tmp_path)
    for jpg in (tmp_path / "coco" / "val2014").glob("*.jpg"):
        jpg.unlink()
    assert main(["coco", "--root", str(tmp_path), "--skip-download"]) == 2
    err = capsys.readouterr().err
    assert "3 of 3 COCO val2014 images" in err and "COCO_val2014_000000000011.jpg" in err
    assert f"python -m data_utils.prepare coco --root {tmp_path}" in err
    assert not (tmp_path / "lists" / "coco" / "test.txt").exists()
    with pytest.raises(DataError):
        main(["coco", "--root", str(tmp_path), "--skip-download", "--debug"])
