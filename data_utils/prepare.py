"""``python -m data_utils.prepare {pascal,coco} [--root DIR]``: download, verify, extract, derive the lists.

Every download is listed once, in ``REGISTRY``. Downloads resume (HTTP Range) after an interruption, are checked
against their sha256 where one is recorded (``None`` means no trustworthy digest was available: the command prints
the digest it computed so it can be recorded), and are skipped once verified. Archives are extracted once (a marker
file remembers it). Afterwards the protocol lists and the 2,048-pixel class index are derived from the datasets' own
files and written to the data root.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from .sources import DATA_ENV, default_data_root


@dataclass(frozen=True)
class Resource:
    """One file to download: where from, its digest, where it unpacks, and which members to keep."""

    url: str
    filename: str
    sha256: str | None
    extract_to: str  # folder under the data root
    members: tuple[str, ...] | None = None  # archive members to extract (None = all)
    md5: str | None = None  # published MD5 where the host only gives that


REGISTRY: dict[str, tuple[Resource, ...]] = {
    "pascal": (
        Resource(
            url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            filename="VOCtrainval_11-May-2012.tar",
            sha256=None,
            md5="6cd6e144f989b92b3379bac3b3de84fd",  # the MD5 torchvision's VOC loader checks
            extract_to=".",
        ),
        Resource(
            url="https://www.dropbox.com/s/oeu149j8qtbs1x0/SegmentationClassAug.zip?dl=1",
            filename="SegmentationClassAug.zip",
            sha256=None,
            extract_to="VOCdevkit/VOC2012",
        ),
        Resource(
            url="http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
            filename="benchmark.tgz",
            sha256=None,
            extract_to=".",
            members=("benchmark_RELEASE/dataset/train.txt", "benchmark_RELEASE/dataset/val.txt"),
        ),
    ),
    "coco": (
        Resource(url="http://images.cocodataset.org/zips/train2014.zip", filename="train2014.zip", sha256=None,
                 extract_to="coco"),
        Resource(url="http://images.cocodataset.org/zips/val2014.zip", filename="val2014.zip", sha256=None,
                 extract_to="coco"),
        Resource(url="http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
                 filename="annotations_trainval2014.zip", sha256=None, extract_to="coco",
                 members=("annotations/instances_train2014.json", "annotations/instances_val2014.json")),
    ),
}

Opener = Callable[[urllib.request.Request], object]
CHUNK = 1 << 20


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file, read in chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def verify(path: Path, resource: Resource, log: Callable[[str], None] = print) -> None:
    """Check ``path`` against the recorded digests; remember success in a marker file so it is not re-hashed."""
    sha, md5 = file_digests(path)
    if resource.sha256 is not None and sha != resource.sha256:
        path.unlink()
        raise RuntimeError(f"{path.name}: sha256 {sha} does not match the registry's {resource.sha256}; "
                           "the corrupt download was deleted, run the command again")
    if resource.md5 is not None and md5 != resource.md5:
        path.unlink()
        raise RuntimeError(f"{path.name}: md5 {md5} does not match the published {resource.md5}; "
                           "the corrupt download was deleted, run the command again")
    if resource.sha256 is None:
        log(f"{path.name}: no sha256 recorded in the registry; computed sha256 = {sha}")
    _verified_marker(path).write_text(sha + "\n")


def download(resource: Resource, folder: Path, opener: Opener = urllib.request.urlopen,
             log: Callable[[str], None] = print) -> Path:
    """Download ``resource`` into ``folder`` (resuming a ``.part`` file with an HTTP Range request), then verify."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / resource.filename
    if target.is_file() and _verified_marker(target).is_file():
        return target
    if not target.is_file():
        part = target.with_name(target.name + ".part")
        have = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(resource.url, headers={"Range": f"bytes={have}-"} if have else {})
        with opener(request) as response:
            status = getattr(response, "status", None) or response.getcode()
            if have and status != 206:  # the server ignored the Range header: start again
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with open(part, "ab" if have else "wb") as out, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=resource.filename
            ) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
        part.rename(target)
    verify(target, resource, log)
    return target


def _safe_tar_extract(tf: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    """Extract one member, refusing paths that leave ``destination`` (tarfile's "data" filter where available)."""
    try:
        tf.extract(member, destination, filter="data")
    except TypeError:  # Python releases before the extraction filters (3.10.11 and older)
        target = (destination / member.name).resolve()
        if not target.is_relative_to(destination.resolve()) or member.issym() or member.islnk():
            raise RuntimeError(f"refusing to extract {member.name!r}: it points outside {destination}") from None
        tf.extract(member, destination)


def extract(archive: Path, destination: Path, members: tuple[str, ...] | None = None) -> None:
    """Unpack a tar/zip archive once (a marker file next to the archive remembers it)."""
    marker = archive.with_name(archive.name + ".extracted")
    if marker.is_file():
        return
    destination.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not n.startswith("__MACOSX")]
            if members is not None:
                names = [n for n in names if n in members]
            for name in tqdm(names, desc=f"extract {archive.name}", unit="file"):
                zf.extract(name, destination)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            selected = [m for m in tf.getmembers() if members is None or m.name in members]
            for member in tqdm(selected, desc=f"extract {archive.name}", unit="file"):
                _safe_tar_extract(tf, member, destination)
    else:
        raise RuntimeError(f"{archive} is neither a zip nor a tar archive")
    if members is not None:
        found = {str(p.relative_to(destination)).replace("\\", "/") for p in destination.rglob("*") if p.is_file()}
        missing = [m for m in members if m not in found]
        if missing:
            raise RuntimeError(f"{archive.name} lacks the expected members {missing}")
    marker.write_text("ok\n")


def fetch(dataset: str, root: Path, opener: Opener = urllib.request.urlopen,
          log: Callable[[str], None] = print) -> None:
    """Download, verify and extract every registry entry of ``dataset`` into ``root`` (``root/downloads`` keeps the
    archives)."""
    if dataset not in REGISTRY:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(REGISTRY)}")
    for resource in REGISTRY[dataset]:
        archive = download(resource, root / "downloads", opener=opener, log=log)
        extract(archive, root / resource.extract_to, resource.members)


def derive(dataset: str, root: Path, log: Callable[[str], None] = print) -> dict[str, int]:
    """Write the protocol lists and the class index of both splits; returns the number of images per split."""
    from .datasets import get_source

    if dataset == "pascal":
        from .pascal import derive_pascal_lists

        lists = derive_pascal_lists(root)
        counts = {s: len(v) for s, v in lists.items()}
    elif dataset == "coco":
        from .coco import write_coco_labels

        counts = {s: len(write_coco_labels(root, s)) for s in ("train", "test")}
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    source = get_source(dataset, root=root)
    for split in ("train", "test"):
        index = source.class_index(split)
        log(f"{dataset} {split}: {counts[split]} images, {sum(map(len, index.values()))} (image, class) pairs "
            f"with >= {source.min_pixels} pixels")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_utils.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=sorted(REGISTRY))
    parser.add_argument("--root", type=Path, default=None,
                        help=f"data folder (default: ${DATA_ENV} or ./data)")
    parser.add_argument("--skip-download", action="store_true",
                        help="the archives are already extracted under --root: only derive the lists")
    args = parser.parse_args(argv)
    root = args.root if args.root is not None else default_data_root()
    root.mkdir(parents=True, exist_ok=True)
    if not args.skip_download:
        free = shutil.disk_usage(root).free / 2**30
        print(f"data root: {root} ({free:.0f} GiB free)")
        fetch(args.dataset, root)
    derive(args.dataset, root)
    print(f"done: {args.dataset} is ready under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
