"""Command line: ``python -m dpcn_lite train | evaluate | predict`` (``dpcn-lite`` when installed).

    python -m dpcn_lite train --preset cpu --run-dir runs/quickstart          # the README's main job
    python -m dpcn_lite evaluate --checkpoint runs/quickstart/checkpoint.pt --eval-seeds 0 1 2
    python -m dpcn_lite predict --pretrained cpu-synthetic-fold0 --output predictions.png
    python -m dpcn_lite predict --support-image S.jpg --support-mask M.png --query-image Q.jpg --out prediction.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from data_utils.datasets import DATASETS
from data_utils.errors import BadArgumentError, UserError
from data_utils.synthetic.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK, get_benchmark
from dpcn_lite.config import MODEL_NAMES, OPTIMIZERS, TRAINING_PRESET_NAMES

PREDICT_MASK_HELP = "a single-channel PNG of the support's size, the object nonzero (e.g. 255), the background 0"

EPILOG = """\
examples:
  python -m dpcn_lite train --preset cpu --run-dir runs/quickstart
  python -m dpcn_lite train --preset cpu --model prototype --run-dir runs/prototype
  python -m dpcn_lite train --preset paper --dataset pascal --fold 0 --run-dir runs/pascal-f0   (GPU)
  torchrun --nproc_per_node 4 -m dpcn_lite train --preset paper --dataset coco --run-dir runs/coco-f0
  python -m dpcn_lite evaluate --run-dir runs/quickstart --eval-seeds 0 1 2 3 4
  python -m dpcn_lite predict --pretrained cpu-synthetic-fold0 --output predictions.png
  python -m dpcn_lite predict --support-image S.jpg --support-mask M.png --query-image Q.jpg --out prediction.png
"""


def _bounded_int(low: int, high: int):
    """An argparse type: an integer in [low, high] (argparse turns the error into one usage line, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low} to {high}")
        return value
    parse.__name__ = "integer"
    return parse


def _positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 (``nan``, ``inf``, 0 and negatives are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number greater than 0")
    return value


_positive_number.__name__ = "number"
SEED = _bounded_int(0, 2**32 - 1)
COUNT = _bounded_int(1, 10**8)


def _add_data_arguments(parser: argparse.ArgumentParser, with_defaults: bool) -> None:
    default = (lambda value: value) if with_defaults else (lambda value: None)
    parser.add_argument("--dataset", choices=DATASETS, default=default("synthetic"),
                        help="episodes from the embedded synthetic benchmark (no download), PASCAL-5i or COCO-20i "
                             "(prepare them with `python -m data_utils.prepare`)" +
                             ("" if with_defaults else "; default: the checkpoint's"))
    parser.add_argument("--data-root", default=None, help="data folder for pascal/coco (default: $DPCN_DATA or ./data)")
    parser.add_argument("--benchmark", choices=sorted(BENCHMARKS), default=default(DEFAULT_BENCHMARK),
                        dest="synthetic_benchmark",
                        help="which synthetic benchmark: categories (v2) or shapes (v1, silhouettes only)" +
                        (f" (default {DEFAULT_BENCHMARK})" if with_defaults else " (default: the checkpoint's)"))
    parser.add_argument("--fold", type=_bounded_int(0, 3), default=default(0), help="fold 0-3: its 5 (COCO: 20) classes are novel" +
                        ("" if with_defaults else "; default: the checkpoint's"))
    parser.add_argument("--shots", type=_bounded_int(1, 100), default=default(1), help="support images per episode (k)" +
                        ("" if with_defaults else "; default: the checkpoint's (a 1-shot model can be tested 5-shot)"))


def _add_eval_arguments(parser: argparse.ArgumentParser, with_defaults: bool = True) -> None:
    parser.add_argument("--episodes", type=COUNT, default=None,
                        help="test episodes per seed (protocol: 1000; default: the preset's)")
    parser.add_argument("--eval-seeds", type=SEED, nargs="+", default=None, metavar="SEED",
                        help="one fixed episode list per seed; several seeds report mean ± std (default: 0)")
    parser.add_argument("--test-scales", type=_positive_number, nargs="+", default=None, metavar="SCALE",
                        help="multi-scale testing: resize the query by each scale and average the logits "
                             "(default: 1.0 only)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dpcn_lite",
        description="Train and evaluate DPCN (CVPR 2022) and two baselines for few-shot segmentation.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,predict}")

    train = commands.add_parser(
        "train", help="train on a fold's base classes, evaluate on its novel classes, write a run folder",
        description="Train on the base classes of a fold, then evaluate on its novel classes by the protocol "
                    "(original-resolution labels, class IoU = sum(I)/sum(U), FB-IoU). Writes config.json, "
                    "checkpoint.pt, history.jsonl, metrics.json, training_curves.png and predictions.png.",
    )
    train.add_argument("--preset", choices=TRAINING_PRESET_NAMES, default="cpu",
                       help="cpu: frozen EfficientNet-Lite0, 160 px, minutes on a laptop (default); paper: ResNet-50 "
                            "at 473 px, the paper's schedule (GPU); tiny: seconds, for tests")
    train.add_argument("--model", choices=MODEL_NAMES, default="dpcn",
                       help="dpcn (default), prototype (PANet-like baseline) or prior (PFENet-like baseline)")
    _add_data_arguments(train, with_defaults=True)
    train.add_argument("--seed", type=SEED, default=0, help="training seed (default 0)")
    train.add_argument("--run-dir", type=Path, default=None,
                       help="output folder (default: runs/<model>-<preset>-<dataset>-fold<F>-<K>shot)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its checkpoint")
    budget = train.add_argument_group("budget and optimiser (defaults come from the preset)")
    budget.add_argument("--epochs", type=COUNT, default=None)
    budget.add_argument("--episodes-per-epoch", type=COUNT, default=None)
    budget.add_argument("--batch-size", type=COUNT, default=None, help="total batch over all GPUs")
    budget.add_argument("--lr", type=_positive_number, default=None, dest="base_lr", help="base learning rate")
    budget.add_argument("--lr-scale", type=_positive_number, default=None,
                        help="multiplies --lr; 10 reproduces PFENet's hidden x10 (see docs/training.md)")
    budget.add_argument("--head-lr-scale", type=_positive_number, default=None,
                        help="multiplies the head's LR (default: 10 for the paper preset, PFENet's convention; else 1)")
    budget.add_argument("--backbone-lr-scale", type=_positive_number, default=None,
                        help="multiplies the LR of the trainable backbone stage (default 1)")
    budget.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                        help="sgd (momentum 0.9, the paper's family) or adamw (the cpu preset's default)")
    budget.add_argument("--selection-episodes", type=_bounded_int(0, 100_000), default=None,
                        help="held-out base-class episodes scored after each epoch to keep the best epoch (best.pt) "
                             "beside the last (default: 300 for the paper preset, else 0 = off)")
    budget.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    budget.add_argument("--no-feature-cache", action="store_true",
                        help="run the frozen backbone on every episode (enables augmentation)")
    budget.add_argument("--num-workers", type=_bounded_int(0, 256), default=None, help="DataLoader workers (default 0)")
    ablation = train.add_argument_group("ablations (DPCN only)")
    ablation.add_argument("--no-sam", action="store_true", help="drop the Support Activation Module")
    ablation.add_argument("--no-ffm", action="store_true", help="drop the Feature Filtering Module")
    ablation.add_argument("--no-dcm", action="store_true", help="drop the Dynamic Convolution Module")
    _add_eval_arguments(train)

    evaluate = commands.add_parser(
        "evaluate", help="evaluate a trained checkpoint on the novel classes",
        description="Load a checkpoint (weights_only=True) and evaluate it by the protocol; prints and writes metrics.",
    )
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a checkpoint.pt written by `train`")
    source.add_argument("--run-dir", type=Path, help="a run folder (its checkpoint.pt is used)")
    source.add_argument("--pretrained", help="a checkpoint shipped with the package, e.g. cpu-synthetic-fold0")
    _add_data_arguments(evaluate, with_defaults=False)
    _add_eval_arguments(evaluate)
    evaluate.add_argument("--output", type=Path, default=None, help="where to write the metrics JSON (optional)")

    predict = commands.add_parser(
        "predict", help="segment your own query image from one annotated support image, or draw test episodes",
        description="Your own images: --support-image, --support-mask and --query-image segment the query for the "
                    "object marked on the support, and write a figure (--output) plus the predicted mask as a PNG at "
                    "the query's original size (<output>-mask.png, or --mask-output). The mask: " + PREDICT_MASK_HELP
                    + ". Without them: draw support, ground truth and prediction for the first test episodes of a "
                    "seed. The model: the shipped DPCN checkpoint unless --checkpoint, --run-dir or --pretrained says "
                    "otherwise.",
    )
    source = predict.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path,
                        help="a checkpoint.pt written by `train`, or its run folder (default: the shipped "
                             "cpu-synthetic-fold0)")
    source.add_argument("--run-dir", type=Path, help="a run folder (its checkpoint.pt is used)")
    source.add_argument("--pretrained", help="a checkpoint shipped with the package, e.g. cpu-synthetic-fold0")
    own = predict.add_argument_group("your own images (give all three)")
    own.add_argument("--support-image", type=Path, default=None, help="the support image (JPEG, PNG, ...)")
    own.add_argument("--support-mask", type=Path, default=None,
                     help="its mask: a PNG of the same size, the object nonzero (e.g. 255), the background 0")
    own.add_argument("--query-image", type=Path, default=None, help="the image to segment")
    own.add_argument("--mask-output", type=Path, default=None,
                     help="where to write the predicted mask (PNG, 255 = object; default: <output>-mask.png)")
    _add_data_arguments(predict, with_defaults=False)
    predict.add_argument("--episodes", type=_bounded_int(1, 64), default=4,
                         help="test episodes: how many to draw (default 4)")
    predict.add_argument("--seed", type=SEED, default=0, help="test episodes: the episode-list seed (default 0)")
    predict.add_argument("--output", "--out", type=Path, default=None,
                         help="the figure (PNG; default prediction.png for your own images, predictions.png for "
                              "test episodes)")
    predict.add_argument("--device", default=None)
    for command in (train, evaluate, predict):  # --debug is accepted before or after the command's name
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the full traceback of an error")
    return parser


def _train(args: argparse.Namespace) -> int:
    from dpcn_lite.config import resolve_config
    from dpcn_lite.experiment import run_experiment

    overrides = {}
    if args.no_sam:
        overrides["use_sam"] = False
    if args.no_ffm:
        overrides["use_ffm"] = False
    if args.no_dcm:
        overrides["use_dcm"] = False
    if overrides and args.model != "dpcn":
        raise BadArgumentError("--no-sam/--no-ffm/--no-dcm switch DPCN's modules; use them with --model dpcn.")
    options = dict(epochs=args.epochs, batch_size=args.batch_size, base_lr=args.base_lr, lr_scale=args.lr_scale,
                   head_lr_scale=args.head_lr_scale, backbone_lr_scale=args.backbone_lr_scale,
                   selection_episodes=args.selection_episodes,
                   optimizer=args.optimizer, eval_episodes=args.episodes, num_workers=args.num_workers)
    options = {k: v for k, v in options.items() if v is not None}
    if args.episodes_per_epoch is not None:
        options["episodes_per_epoch"] = args.episodes_per_epoch
    if args.eval_seeds is not None:
        options["eval_seeds"] = tuple(args.eval_seeds)
    if args.test_scales is not None:
        options["test_scales"] = tuple(args.test_scales)
    if args.no_amp:
        options["amp"] = False
    if args.no_feature_cache:
        options["feature_cache"] = False
    cfg = resolve_config(args.preset, args.dataset, model=args.model, fold=args.fold, shots=args.shots,
                         seed=args.seed, data_root=args.data_root, synthetic_benchmark=args.synthetic_benchmark,
                         model_overrides=overrides, **options)
    run_dir = args.run_dir or Path("runs") / f"{cfg.model}-{cfg.preset}-{cfg.dataset}-fold{cfg.fold}-{cfg.shots}shot"
    metrics = run_experiment(cfg, run_dir, resume=args.resume, progress=not args.no_progress, device=args.device)
    if metrics:
        _print_summary(metrics)
        print(f"run folder: {run_dir}")
    return 0


def _load(args: argparse.Namespace):
    import torch

    from dpcn_lite.checkpoint import load_trained_model, verified_pretrained_path
    from dpcn_lite.config import TrainConfig
    from dpcn_lite.utils import default_device

    device = torch.device(args.device) if args.device else default_device()
    if args.pretrained:
        path = verified_pretrained_path(args.pretrained)
    else:
        path = args.checkpoint if args.checkpoint else args.run_dir / "checkpoint.pt"
    model, cfg = load_trained_model(path, device)
    changes = {k: getattr(args, k) for k in ("dataset", "fold", "shots", "data_root", "synthetic_benchmark")
               if getattr(args, k) is not None}
    if changes:
        values = cfg.to_dict()
        values.update(changes)
        cfg = TrainConfig.from_dict(values)
    return model, cfg, device


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from dpcn_lite.config import TrainConfig
    from dpcn_lite.evaluate import write_metrics
    from dpcn_lite.experiment import evaluate_on_test, source_key
    from dpcn_lite.feature_cache import FeatureCache

    model, cfg, device = _load(args)
    cache = None if model.backbone.has_trainable_parameters else \
        FeatureCache(model, dtype=torch.float32, key=source_key(cfg))
    if args.test_scales is not None:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), "test_scales": list(args.test_scales)})
    metrics = evaluate_on_test(model, cfg, episodes=args.episodes, seeds=args.eval_seeds, device=device,
                               progress=not args.no_progress, feature_cache=cache)
    metrics.update(model=cfg.model, preset=cfg.preset, dataset=cfg.dataset, train_seed=cfg.seed,
                   test_scales=list(cfg.test_scales))
    if cfg.dataset == "synthetic":
        metrics["benchmark"] = get_benchmark(cfg.synthetic_benchmark).tag
    _print_summary(metrics)
    if args.output:
        write_metrics(metrics, args.output)
        print(f"metrics written to {args.output}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    own = (args.support_image, args.support_mask, args.query_image)
    if any(own):
        return _predict_own_images(args)
    if args.mask_output is not None:
        raise BadArgumentError("--mask-output goes with your own images: give --support-image, --support-mask and "
                               "--query-image too.")
    from data_utils.folds import class_names

    from dpcn_lite.evaluate import prediction_rows
    from dpcn_lite.experiment import episodes_for_config
    from dpcn_lite.predict import DEFAULT_CHECKPOINT
    from dpcn_lite.viz.training import plot_predictions

    if not (args.checkpoint or args.run_dir or args.pretrained):
        args.pretrained = DEFAULT_CHECKPOINT
    if args.checkpoint is not None and args.checkpoint.is_dir():
        args.checkpoint, args.run_dir = None, args.checkpoint
    output = args.output or Path("predictions.png")
    model, cfg, device = _load(args)
    episodes = episodes_for_config(cfg, "test", seed=args.seed, episodes=args.episodes)
    rows = prediction_rows(model, episodes, count=args.episodes, device=device, class_names=class_names(cfg.dataset))
    plot_predictions(rows, output, title=f"{cfg.model} | {cfg.dataset} fold {cfg.fold} | {cfg.shots}-shot")
    print(f"predictions written to {output}")
    return 0


def _predict_own_images(args: argparse.Namespace) -> int:
    """``predict --support-image S --support-mask M --query-image Q``: one episode of the user's files."""
    import torch

    from dpcn_lite.predict import (DEFAULT_CHECKPOINT, load_model, mask_path_for, predict_episode, read_episode,
                                   write_mask)
    from dpcn_lite.utils import default_device
    from dpcn_lite.viz.training import plot_image_prediction

    missing = [flag for flag, value in (("--support-image", args.support_image), ("--support-mask", args.support_mask),
                                        ("--query-image", args.query_image)) if value is None]
    if missing:
        raise BadArgumentError(f"Your own images need all three of --support-image, --support-mask and --query-image; "
                               f"add {' and '.join(missing)}.")
    output = args.output or Path("prediction.png")
    mask_output = args.mask_output or mask_path_for(output)
    for flag, path in (("--output", output), ("--mask-output", mask_output)):
        if path.suffix.lower() != ".png":
            raise BadArgumentError(f"{flag} {path} must end in .png (both files are written as PNG).")
        if any(path.resolve() == Path(p).resolve() for p in (args.support_image, args.support_mask, args.query_image)):
            raise BadArgumentError(f"{flag} {path} is one of your input files; write the result somewhere else.")
    if output.resolve() == mask_output.resolve():
        raise BadArgumentError(f"--output and --mask-output are the same file ({output}); give two paths.")
    support, mask, query = read_episode(args.support_image, args.support_mask, args.query_image)  # refuse bad files first
    device = torch.device(args.device) if args.device else default_device()
    checkpoint = args.checkpoint or args.run_dir or args.pretrained
    model = load_model(checkpoint, device)
    prediction = predict_episode(model, support, mask, query, device=device)
    label = Path(checkpoint).name if isinstance(checkpoint, Path) else (checkpoint or DEFAULT_CHECKPOINT)
    plot_image_prediction(prediction, output, title=f"{type(model).__name__} ({label})")
    write_mask(prediction.mask, mask_output)
    height, width = prediction.mask.shape
    print(f"figure written to {output}")
    print(f"predicted mask ({width}x{height}, {100 * prediction.foreground_fraction:.1f}% object) written to "
          f"{mask_output}")
    return 0


def _print_summary(metrics: dict) -> None:
    std = f" ± {metrics['mIoU_std']:.1f}" if len(metrics.get("eval_seeds", [])) > 1 else ""
    fb_std = f" ± {metrics['FB-IoU_std']:.1f}" if len(metrics.get("eval_seeds", [])) > 1 else ""
    print(f"mIoU {metrics['mIoU']:.1f}{std} | FB-IoU {metrics['FB-IoU']:.1f}{fb_std} | "
          f"{metrics['episodes']} episodes x {len(metrics.get('eval_seeds', [0]))} seed(s), "
          f"{metrics['shots']}-shot, fold {metrics['fold']}")
    if "best_epoch" in metrics:
        best = metrics["best_epoch"]
        print(f"best epoch {best['epoch']} (selected on {best['selected_on']}): mIoU {best['mIoU']:.1f} | "
              f"FB-IoU {best['FB-IoU']:.1f}")
    print("per-class IoU: " + json.dumps({k: None if v is None else round(v, 1)
                                          for k, v in metrics["per_class_IoU"].items()}))
    if metrics.get("classes_without_episodes"):
        print(f"classes without scored episodes in every seed (left out of mIoU): "
              f"{metrics['classes_without_episodes']}; evaluate on more --episodes to score them")


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user error (bad argument, missing or bad data, refused checkpoint or run folder, diverged
    training) prints one line, ``error: <what> <how to fix it>``, and returns 2; ``--debug`` shows its traceback.
    Any other exception is a bug and keeps its traceback."""
    parser = build_parser()
    handlers = {"train": _train, "evaluate": _evaluate, "predict": _predict}
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except UserError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
