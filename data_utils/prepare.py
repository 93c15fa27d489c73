"""``python -m data_utils.prepare {pascal,coco} [--root DIR]``: download, verify, extract, derive the lists.

Every download is listed once, in ``REGISTRY``. Downloads (``data_utils.download``) resume after an interruption, are
counted against ``Content-Length``, retried, refused when they are an HTML page, checked against their sha256 or MD5
where one is recorded (``None`` means no trustworthy digest was available: the archive must then open and list
completely, and the command prints the sha256 it computed so it can be recorded), and are skipped once verified.
Archives are extracted once (a marker file remembers it); a plain file (a list) is copied to its place. Afterwards
the protocol lists and the 2,048-pixel class index are derived from the datasets' own files and written to the data
root.

Problems the user can fix (a :class:`~data_utils.errors.UserError`) end the command with one line ``error: ...`` and
exit status 2; ``--debug`` shows their traceback. Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tarfile
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from .download import Opener, Resource, download, extracted_marker, file_digests, verify
from .errors import BadArgumentError, DatasetNotFoundError, DownloadError, UserError
from .files import atomic_write, atomic_write_text, remove_orphan_temp_files
from .sources import DATA_ENV, default_data_root
from .validation import prepare_command

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
        # SBD's training ids without the VOC 2012 val images, published beside SBD: PFENet's training list is VOC
        # train plus these. One small list instead of the 1.4 GB SBD tarball, whose masks are not needed
        # (SegmentationClassAug above holds them).
        Resource(
            url="https://www.cs.cornell.edu/~bharathh/train_noval.txt",
            filename="train_noval.txt",
            sha256=None,
            md5="79bff800c5f0b1ec6b21080a3c066722",  # the MD5 torchvision's SBD loader checks
            extract_to="benchmark_RELEASE/dataset",
            archive=False,
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


def _safe_tar_extract(tf: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    """Extract one member, refusing paths that leave ``destination`` (tarfile's "data" filter where available)."""
    try:
        tf.extract(member, destination, filter="data")
    except TypeError:  # Python releases before the extraction filters (3.10.11 and older)
        target = (destination / member.name).resolve()
        if not target.is_relative_to(destination.resolve()) or member.issym() or member.islnk():
            raise tarfile.ExtractError(f"{member.name!r} points outside {destination}") from None
        tf.extract(member, destination)


def _unpack(archive: Path, destination: Path, members: tuple[str, ...] | None) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not n.startswith("__MACOSX")]
            if members is not None:
                names = [n for n in names if n in members]
            for name in tqdm(names, desc=f"extract {archive.name}", unit="file"):
                zf.extract(name, destination)  # checks each member's CRC
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            selected = [m for m in tf.getmembers() if members is None or m.name in members]
            for member in tqdm(selected, desc=f"extract {archive.name}", unit="file"):
                _safe_tar_extract(tf, member, destination)
    else:
        raise DownloadError(f"{archive} is neither a zip nor a tar archive: delete it and run the command again")


def extract(archive: Path, destination: Path, members: tuple[str, ...] | None = None,
            command: str = "python -m data_utils.prepare") -> None:
    """Unpack a tar/zip archive once (a marker file next to the archive remembers it).

    A corrupt archive (bad CRC, cut short, a member leaving ``destination``) is a ``DownloadError`` naming the file
    to delete; ``command`` is the command the message tells the user to rerun."""
    marker = extracted_marker(archive)
    if marker.is_file():
        return
    destination.mkdir(parents=True, exist_ok=True)
    try:
        _unpack(archive, destination, members)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        raise DownloadError(f"{archive} is corrupt ({err}): delete it and run the command again to download it "
                            f"({command})") from err
    if members is not None:
        found = {str(p.relative_to(destination)).replace("\\", "/") for p in destination.rglob("*") if p.is_file()}
        missing = [m for m in members if m not in found]
        if missing:
            raise DownloadError(f"{archive.name} lacks the expected members {missing}: it is not the archive the "
                                f"registry names; delete {archive} and run the command again ({command})")
    atomic_write_text("ok\n", marker)


def place(path: Path, destination: Path) -> None:
    """Copy a verified plain file to where the loaders look for it, atomically, unless an identical copy is there.

    Compared byte for byte rather than remembered by a marker, so a copy edited or damaged by hand is replaced."""
    if destination.is_file() and filecmp.cmp(path, destination, shallow=False):
        return
    with open(path, "rb") as source:
        atomic_write(destination, lambda file: shutil.copyfileobj(source, file))


def check_dataset(dataset: str) -> str:
    if dataset not in REGISTRY:
        raise BadArgumentError(f"unknown dataset {dataset!r}; expected one of {sorted(REGISTRY)}")
    return dataset


def fetch(dataset: str, root: Path, opener: Opener = urllib.request.urlopen,
          log: Callable[[str], None] = print) -> None:
    """Download, verify and extract (or, for a plain file, place) every registry entry of ``dataset`` into ``root``
    (``root/downloads`` keeps the downloaded files)."""
    check_dataset(dataset)
    command = f"{prepare_command(dataset)} --root {root}"
    remove_orphan_temp_files(root / "downloads")
    for resource in REGISTRY[dataset]:
        path = download(resource, root / "downloads", opener=opener, log=log, command=command)
        if resource.archive:
            extract(path, root / resource.extract_to, resource.members, command)
        else:
            place(path, root / resource.extract_to / resource.filename)


def derive(dataset: str, root: Path, log: Callable[[str], None] = print) -> dict[str, int]:
    """Write the protocol lists and the class index of both splits; returns the number of images per split."""
    from .datasets import get_source

    check_dataset(dataset)
    if dataset == "pascal":
        from .pascal import derive_pascal_lists

        lists = derive_pascal_lists(root)
        counts = {s: len(v) for s, v in lists.items()}
    else:
        from .coco import write_coco_labels

        counts = {s: len(write_coco_labels(root, s)) for s in ("train", "test")}
    source = get_source(dataset, root=root)
    for split in ("train", "test"):
        index = source.class_index(split)
        log(f"{dataset} {split}: {counts[split]} images, {sum(map(len, index.values()))} (image, class) pairs "
            f"with >= {source.min_pixels} pixels")
    return counts


def check_root(root: Path, must_exist: bool) -> Path:
    """Refuse a data root that is a file, lies under a file or cannot be written, before anything is written."""
    if root.exists() and not root.is_dir():
        raise BadArgumentError(f"--root {root} is a file, not a folder")
    if not root.exists():
        if must_exist:
            raise DatasetNotFoundError(f"--skip-download needs the extracted data under {root}, which does not "
                                       f"exist; drop --skip-download to download it")
        existing = next(p for p in (root.absolute(), *root.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise BadArgumentError(f"--root {root} cannot be created: {existing} is a file")
        root_to_write = existing
    else:
        root_to_write = root
    if not os.access(root_to_write, os.W_OK | os.X_OK):
        raise BadArgumentError(f"--root {root}: no permission to write in {root_to_write}")
    return root


def _run(args: argparse.Namespace) -> int:
    root = check_root(args.root if args.root is not None else default_data_root(), must_exist=args.skip_download)
    root.mkdir(parents=True, exist_ok=True)
    if not args.skip_download:
        free = shutil.disk_usage(root).free / 2**30
        print(f"data root: {root} ({free:.0f} GiB free)")
        fetch(args.dataset, root)
    derive(args.dataset, root)
    print(f"done: {args.dataset} is ready under {root}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 and one line on stderr for a problem the user can fix)."""
    parser = argparse.ArgumentParser(prog="python -m data_utils.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=sorted(REGISTRY))
    parser.add_argument("--root", type=Path, default=None,
                        help=f"data folder (default: ${DATA_ENV} or ./data)")
    parser.add_argument("--skip-download", action="store_true",
                        help="the archives are already extracted under --root: only derive the lists")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of a user error too")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except UserError as err:
        if args.debug:
            raise
        print("error: " + " ".join(line.strip() for line in str(err).splitlines() if line.strip()), file=sys.stderr)
        return 2


__all__ = ["REGISTRY", "Resource", "check_root", "derive", "download", "extract", "fetch", "file_digests", "main",
           "place", "verify"]


if __name__ == "__main__":
    sys.exit(main())
