"""Render the synthetic benchmark's class gallery (one example per class, one row per fold) into the docs.

    python scripts/render_gallery.py [--benchmark categories] [--size 160] [--out docs/images/synthetic_gallery.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from data_utils.synthetic import BENCHMARKS, DEFAULT_BENCHMARK, SyntheticSource  # noqa: E402
from dpcn_lite.viz.episodes import show_class_gallery  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", choices=sorted(BENCHMARKS), default=DEFAULT_BENCHMARK)
    parser.add_argument("--size", type=int, default=160, help="image size of the synthetic benchmark")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "synthetic_gallery.png")
    args = parser.parse_args()
    source = SyntheticSource(image_size=args.size, images_per_class={"train": 8, "test": 4}, benchmark=args.benchmark)
    show_class_gallery(source, split="train", path=args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
