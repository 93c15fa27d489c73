"""The synthetic-benchmark results table: baselines, DPCN, its ablations, 1-shot vs 5-shot.

Every row: the cpu preset (frozen EfficientNet-Lite0, 160 px), fold 0, trained 1-shot with the same budget, three
training seeds, each evaluated on the same 1,000 seeded test episodes (seed 0) by the protocol. 5-shot numbers come
from the 1-shot models evaluated with 5 supports (PFENet's convention; DPCN pools the foreground vectors of all shots).

All runs share one feature cache for the training pool and one (float32) for the test pool, so the backbone runs once
per image for the whole table. Partial results are written after every run, so the table fills in as it goes:

    python scripts/run_synthetic_results.py                 # the main job's budget per row, one process
    python scripts/run_synthetic_results.py --shard 0/2 &   # the same, split over two processes (two cores):
    python scripts/run_synthetic_results.py --shard 1/2     # each trains every other (seed, row) run ...
    python scripts/run_synthetic_results.py                 # ... then one plain call renders the finished table
    python scripts/run_synthetic_results.py --epochs 3 --episodes-per-epoch 320   # a quick smoke run

Outputs: ``docs/results.md`` (table), ``docs/images/results_synthetic.png`` (figure), and the raw numbers in
``runs/synthetic-results/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dpcn_lite.checkpoint import load_trained_model
from dpcn_lite.config import TrainConfig, resolve_config
from dpcn_lite.evaluate import ForeignSupports, evaluate, summarise_runs
from dpcn_lite.experiment import episodes_for_config, make_source, run_experiment
from dpcn_lite.feature_cache import FeatureCache
from dpcn_lite.metrics import mean_and_std
from dpcn_lite.model import build_model

ROOT = Path(__file__).resolve().parents[1]
ROWS: list[tuple[str, dict]] = [
    ("Prototype baseline (PANet-like)", {"model": "prototype"}),
    ("Prior-mask baseline (PFENet-like)", {"model": "prior"}),
    ("DPCN (SAM + FFM + DCM)", {"model": "dpcn"}),
    ("DPCN without SAM", {"model": "dpcn", "model_overrides": {"use_sam": False}}),
    ("DPCN without FFM", {"model": "dpcn", "model_overrides": {"use_ffm": False}}),
    ("DPCN without DCM", {"model": "dpcn", "model_overrides": {"use_dcm": False}}),
]
ANALYSIS_MARKER = "<!-- analysis: kept when the table is re-rendered -->"
FIVE_SHOT_ROWS = {"Prototype baseline (PANet-like)", "DPCN (SAM + FFM + DCM)"}


def _supports(result: dict) -> str:
    """Which supports an evaluation used: the episode's own ("true") or another class's ("foreign")."""
    return result.get("supports", "true")


def render(results: list[dict], budget: dict, path: Path, figure: Path, elapsed: float, complete: bool) -> None:
    """Rewrite docs/results.md (and the figure) from the runs finished so far."""
    rows = []
    for label, _ in ROWS:
        for shots in (1, 5):
            runs = [r for r in results if r["row"] == label and r["eval_shots"] == shots and _supports(r) == "true"]
            if not runs:
                continue
            miou, miou_std = mean_and_std([r["mIoU"] for r in runs])
            fb, fb_std = mean_and_std([r["FB-IoU"] for r in runs])
            rows.append({"label": label, "shots": shots, "mIoU": miou, "mIoU_std": miou_std if len(runs) > 1 else None,
                         "FB-IoU": fb, "FB-IoU_std": fb_std if len(runs) > 1 else None,
                         "seeds": [r["seed"] for r in runs],
                         "per_seed": [round(r["mIoU"], 1) for r in runs]})
    lines = [
        "# Results on the synthetic benchmark",
        "",
        *([] if complete else ["**Partial: the script is still running; rows fill in as runs finish.**", ""]),
        "Made by `python scripts/run_synthetic_results.py`. Every row: cpu preset (frozen EfficientNet-Lite0, 160 px, "
        "C = 64), synthetic fold 0 (novel classes 1-5), trained 1-shot with the same budget "
        f"({budget['epochs']} epochs x {budget['episodes_per_epoch']} episodes, batch {budget['batch_size']}, "
        f"{budget['optimizer']}, poly LR from {budget['effective_lr']:g}), training seeds {budget['seeds']}, "
        f"each evaluated on the same {budget['eval_episodes']:,} test episodes (seed 0) at original resolution, class IoU = sum(I)/sum(U). "
        "Mean ± sample std over the training seeds; percent.",
        "",
        "| model | shots | mIoU | FB-IoU | mIoU per seed |",
        "|---|---|---|---|---|",
    ]
    def with_std(mean: float, std: float | None) -> str:
        return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f} (one seed: no std)"

    for row in rows:
        lines.append(f"| {row['label']} | {row['shots']} | {with_std(row['mIoU'], row['mIoU_std'])} | "
                     f"{with_std(row['FB-IoU'], row['FB-IoU_std'])} | {', '.join(map(str, row['per_seed']))} |")
    lines += ["", f"![mIoU per row, mean and std over the training seeds](images/{figure.name})"]
    controls = []
    for label, _ in ROWS:
        true = [r["mIoU"] for r in results if r["row"] == label and r["eval_shots"] == 1 and _supports(r) == "true"]
        foreign = [r["mIoU"] for r in results if r["row"] == label and r["eval_shots"] == 1 and _supports(r) == "foreign"]
        if foreign:
            controls.append(f"| {label} | {sum(true) / len(true):.1f} | {sum(foreign) / len(foreign):.1f} |")
    if controls:
        lines += ["", f"**Does each model use its support?** The same {budget['eval_episodes']:,} test episodes, 1-shot, "
                  "once with their own supports and once with the supports of the next episode of another class "
                  "(`dpcn_lite.evaluate.ForeignSupports`); mean mIoU over the training seeds. A model that ignored the "
                  "support would score the same in both columns.", "",
                  "| model | own supports | supports of another class |", "|---|---|---|", *controls]
    compute = sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in results)
    lines += ["", f"Compute: {compute / 60:.1f} min of single-process training and evaluation over the runs shown "
              f"(this call: {elapsed / 60:.1f} min wall time).", ""]
    # Hand-written analysis below the marker survives re-rendering.
    previous = path.read_text() if path.exists() else ""
    if ANALYSIS_MARKER in previous:
        lines += [previous[previous.index(ANALYSIS_MARKER):].rstrip("\n")]
    path.write_text("\n".join(lines) + "\n")
    _figure(rows, figure)


def _figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dpcn_lite.viz import finish

    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2), dpi=100)
    labels = [f"{r['label']} ({r['shots']}-shot)" for r in rows][::-1]
    means = [r["mIoU"] for r in rows][::-1]
    stds = [r["mIoU_std"] or 0.0 for r in rows][::-1]
    colours = ["0.6" if "baseline" in r["label"] else "tab:red" if r["label"].startswith("DPCN (") else "tab:orange"
               for r in rows][::-1]
    ax.barh(range(len(rows)), means, xerr=stds, color=colours, capsize=3)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    seeds = max(len(r["seeds"]) for r in rows)
    ax.set_xlabel(f"mIoU (%) on fold 0's novel classes, mean ± std over {seeds} training seed(s)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    finish(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    preset = resolve_config("cpu")
    parser.add_argument("--epochs", type=int, default=preset.epochs, help="default: the cpu preset's (the main job's)")
    parser.add_argument("--episodes-per-epoch", type=int, default=preset.episodes_per_epoch)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "synthetic-results")
    parser.add_argument("--shard", default="0/1", help="i/n: run only every n-th (seed, row) run, starting at i; "
                        "shards append to the same log and leave docs/ alone")
    args = parser.parse_args()
    shard, shards = (int(v) for v in args.shard.split("/"))
    if not 0 <= shard < shards:
        raise SystemExit(f"--shard {args.shard}: use i/n with 0 <= i < n, e.g. 0/2 and 1/2.")
    writes_docs = shards == 1

    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "results.jsonl"
    results = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["row"], r["seed"], r["eval_shots"], _supports(r)) for r in results}

    base = resolve_config("cpu", epochs=args.epochs, episodes_per_epoch=args.episodes_per_epoch,
                          eval_episodes=args.eval_episodes)
    budget = {"epochs": args.epochs, "episodes_per_epoch": args.episodes_per_epoch, "batch_size": base.batch_size,
              "effective_lr": base.learning_rate, "optimizer": {"sgd": "SGD", "adamw": "AdamW"}[base.optimizer],
              "seeds": args.seeds, "eval_episodes": args.eval_episodes}
    # One backbone for all caches (every row uses the same frozen pretrained Lite0).
    holder = build_model("prototype", base.model_config())
    train_cache = FeatureCache(holder, dtype=torch.float16)
    test_cache = FeatureCache(holder, dtype=torch.float32)
    source = make_source(base)
    docs, figure = ROOT / "docs" / "results.md", ROOT / "docs" / "images" / "results_synthetic.png"

    def record(label: str, seed: int, shots: int, metrics: dict, supports: str = "true", **extra) -> None:
        """Keep one finished evaluation: append it to the log, print it, and re-render the partial table."""
        row = {"row": label, "seed": seed, "eval_shots": shots, "supports": supports, "mIoU": metrics["mIoU"],
               "FB-IoU": metrics["FB-IoU"], "per_class_IoU": metrics["per_class_IoU"], **extra}
        results.append(row)
        with open(log, "a") as file:
            file.write(json.dumps(row) + "\n")
        print(f"{label} seed {seed} {shots}-shot, {supports} supports: mIoU {metrics['mIoU']:.1f}", flush=True)
        if writes_docs:
            render(results, budget, docs, figure, time.perf_counter() - started, complete=False)

    # Seeds outermost: if the script is stopped early, every row has at least its first seed.
    jobs = [(seed, label, row) for seed in args.seeds for label, row in ROWS]
    for seed, label, row in jobs[shard::shards]:
        run_dir = args.out / f"{label.split(' (')[0].replace(' ', '-').lower()}-seed{seed}"
        if (label, seed, 1, "true") not in done:
            cfg = resolve_config("cpu", epochs=args.epochs, episodes_per_epoch=args.episodes_per_epoch,
                                 eval_episodes=args.eval_episodes, seed=seed, **row)
            metrics = run_experiment(cfg, run_dir, resume=(run_dir / "checkpoint.pt").exists(), progress=False,
                                     train_cache=train_cache, test_cache=test_cache, figures=False)
            record(label, seed, 1, metrics, train_seconds=metrics["train_seconds"],
                   eval_seconds=metrics["eval_seconds"])
        if (label, seed, 1, "foreign") not in done:
            model, cfg = load_trained_model(run_dir / "checkpoint.pt")
            episodes = episodes_for_config(cfg, "test", seed=0, episodes=args.eval_episodes, source=source)
            metrics = summarise_runs([evaluate(model, ForeignSupports(episodes), progress=False,
                                               feature_cache=test_cache)])
            record(label, seed, 1, metrics, supports="foreign")
        if label in FIVE_SHOT_ROWS and (label, seed, 5, "true") not in done:
            model, cfg = load_trained_model(run_dir / "checkpoint.pt")
            five = TrainConfig.from_dict({**cfg.to_dict(), "shots": 5})
            episodes = episodes_for_config(five, "test", seed=0, episodes=args.eval_episodes, source=source)
            metrics = summarise_runs([evaluate(model, episodes, progress=False, feature_cache=test_cache)])
            record(label, seed, 5, metrics)
    if writes_docs:
        render(results, budget, docs, figure, time.perf_counter() - started, complete=True)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min; " +
          (f"table in {docs}" if writes_docs else "run the script once more without --shard to render the table"))


if __name__ == "__main__":
    main()
