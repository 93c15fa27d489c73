"""Make the small trained checkpoints shipped with the package: ``dpcn_lite/checkpoints/cpu-synthetic-fold0*.pt``.

Trains the cpu preset (synthetic fold 0, 1-shot, seed 0: for DPCN exactly the README's main job; ``--model prototype``
the prototype baseline the course compares it with), or reuses a finished run of it, and stores only what the frozen
pretrained backbone cannot rebuild: the head's weights, the configs and the run's metrics. The sha256 and the
benchmark's name and version go into the JSON beside it; ``dpcn_lite.checkpoint.load_pretrained`` checks the sha256.

    python scripts/make_checkpoint.py                              # DPCN; trains (about as long as the main job)
    python scripts/make_checkpoint.py --from-run runs/quickstart   # reuses a finished main-job run
    python scripts/make_checkpoint.py --model prototype            # cpu-synthetic-fold0-prototype
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from data_utils.files import atomic_write_text
from dpcn_lite.checkpoint import (
    PACKAGE_CHECKPOINTS,
    atomic_save,
    build_model_from_checkpoint,
    head_only_checkpoint,
    load_checkpoint,
    sha256_of,
)
from dpcn_lite.config import TrainConfig, resolve_config
from dpcn_lite.experiment import run_experiment

NAMES = {"dpcn": "cpu-synthetic-fold0", "prototype": "cpu-synthetic-fold0-prototype"}
METRIC_KEYS = ("mIoU", "FB-IoU", "per_class_IoU", "per_class_IoU_by_name", "episodes", "shots", "fold", "seed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-run", type=Path, default=None, help="a finished run of the cpu preset, fold 0, 1-shot")
    parser.add_argument("--run-dir", type=Path, default=None, help="where to train (default runs/make-checkpoint-MODEL)")
    parser.add_argument("--model", choices=sorted(NAMES), default="dpcn")
    args = parser.parse_args()

    name = NAMES[args.model]
    expected = resolve_config("cpu", model=args.model, fold=0, shots=1, seed=0)
    run_dir = args.from_run
    if run_dir is None:
        run_dir = args.run_dir or Path("runs") / f"make-checkpoint-{args.model}"
        run_experiment(expected, run_dir, resume=(run_dir / "checkpoint.pt").exists())
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    trained = TrainConfig.from_dict(checkpoint["train_config"])
    if trained.to_dict() != expected.to_dict():
        raise SystemExit(f"{run_dir} was not trained as {args.model} with the cpu preset defaults "
                         "(fold 0, 1-shot, seed 0).")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model = build_model_from_checkpoint(checkpoint)

    shipped = head_only_checkpoint(checkpoint, model)
    path = atomic_save(shipped, PACKAGE_CHECKPOINTS / f"{name}.pt")

    # The shipped file must rebuild the same model: compare every weight with the trained one.
    rebuilt = build_model_from_checkpoint(load_checkpoint(path))
    for (key, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        if not torch.equal(a, b):
            raise SystemExit(f"rebuilt model differs from the trained one at {key}")

    record = {
        "name": name,
        "file": path.name,
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
        "made_by": "python scripts/make_checkpoint.py" + ("" if args.model == "dpcn" else f" --model {args.model}"),
        "model": checkpoint["model_name"],
        "preset": "cpu",
        "dataset": "synthetic",
        "benchmark": metrics["benchmark"],
        "stored": "trainable head only; the frozen EfficientNet-Lite0 backbone is rebuilt from its installed weights",
        "metrics_percent": {k: metrics[k] for k in METRIC_KEYS if k in metrics},
        "torch": torch.__version__,
    }
    atomic_write_text(json.dumps(record, indent=2) + "\n", PACKAGE_CHECKPOINTS / f"{name}.json")
    print(f"wrote {path} ({record['bytes'] / 2**20:.2f} MB), sha256 {record['sha256']}")


if __name__ == "__main__":
    main()
