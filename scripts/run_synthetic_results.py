"""The results table of the synthetic benchmark: the paper's ablations (Tables 3, 4, 5, 7) with paired seeds.

Every row is trained on fold 0 with the cpu preset and the main job's recipe (unless ``--epochs`` /
``--episodes-per-epoch`` say otherwise), with the same training seeds, and evaluated on the same 1,000 test episodes
(test seed 0). Each trained model is evaluated 1-shot with its own supports and with the supports of another class
(``ForeignSupports``); DPCN and the prototype baseline also 5-shot (the 1-shot model given five supports) with every
k-shot fusion of Table 7.

Each finished evaluation is appended to ``docs/results.json`` (and to its packaged copy) at once, so an interrupted
batch keeps what it finished and a second call skips it: the script resumes. Trained models stay under the ignored
``runs/synthetic-results/`` (per budget), half-trained ones resume from their last epoch.

    python scripts/run_synthetic_results.py --estimate                 # CPU and wall hours of the whole batch
    python scripts/run_synthetic_results.py --shard 0/2 &              # the batch on two cores: one process each,
    python scripts/run_synthetic_results.py --shard 1/2 &              # single-threaded, every other job
    python scripts/run_synthetic_results.py --rows dpcn prototype --seeds 5 6   # some rows, more seeds

Jobs run seeds outermost, then rows by priority (DPCN, prototype, without SAM / FFM / DCM, prior, S, kernel shapes,
square-kernel source, oracle), so a batch stopped early has the most important rows at every finished seed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dpcn_lite.checkpoint import load_trained_model
from dpcn_lite.config import KSHOT_FUSIONS, TrainConfig, resolve_config
from dpcn_lite.evaluate import ForeignSupports, evaluate, summarise_runs
from dpcn_lite.experiment import episodes_for_config, make_source, run_experiment, source_key
from dpcn_lite.feature_cache import FeatureCache
from dpcn_lite.model import build_model
from dpcn_lite.results import append_records, packaged_results_path, record_key, recorded_keys

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.json"
PAGE = ROOT / "docs" / "results.md"
TEST_SEED = 0
ANALYSIS_MARKER = "<!-- analysis: kept when the table is re-rendered -->"


@dataclass(frozen=True)
class Row:
    """One row of the table: a model and its settings; ``table`` names the paper's table it sits beside."""

    key: str
    label: str
    table: str
    model: str = "dpcn"
    overrides: dict[str, Any] = field(default_factory=dict)
    train_on_novel: bool = False
    five_shot: bool = False


ROWS: tuple[Row, ...] = (  # priority order
    Row("dpcn", "DPCN (SAM + FFM + DCM)", "3", five_shot=True),
    Row("prototype", "Prototype baseline (PANet-like)", "baselines", model="prototype", five_shot=True),
    Row("no-sam", "DPCN without SAM", "3", overrides={"use_sam": False}),
    Row("no-ffm", "DPCN without FFM", "3", overrides={"use_ffm": False}),
    Row("no-dcm", "DPCN without DCM", "3", overrides={"use_dcm": False}),
    Row("prior", "Prior-mask baseline (PFENet-like)", "baselines", model="prior"),
    Row("S3", "DPCN, S = 3", "4", overrides={"kernel_size": 3}),
    Row("S7", "DPCN, S = 7", "4", overrides={"kernel_size": 7}),
    Row("kernels-v", "DCM kernels S x 1 only", "5", overrides={"dcm_kernels": ("v",)}),
    Row("kernels-h", "DCM kernels 1 x S only", "5", overrides={"dcm_kernels": ("h",)}),
    Row("kernels-s", "DCM kernels S x S only", "5", overrides={"dcm_kernels": ("s",)}),
    Row("kernels-vh", "DCM kernels S x 1 + 1 x S", "5", overrides={"dcm_kernels": ("v", "h")}),
    Row("kernels-vs", "DCM kernels S x 1 + S x S", "5", overrides={"dcm_kernels": ("v", "s")}),
    Row("kernels-hs", "DCM kernels 1 x S + S x S", "5", overrides={"dcm_kernels": ("h", "s")}),
    Row("square-direct", "DPCN, square prototypes direct", "square", overrides={"square_prototypes": "direct"}),
    Row("oracle", "Oracle: DPCN trained on the novel classes too", "oracle", train_on_novel=True),
)
ROW_BY_KEY = {row.key: row for row in ROWS}


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a trained model: shots, whose supports, and (5-shot) the k-shot fusion."""

    shots: int = 1
    supports: str = "own"
    fusion: str | None = None


def evaluations_of(row: Row) -> list[Evaluation]:
    """Own and foreign supports 1-shot; 5-shot with every fusion for the rows that have a 5-shot column.

    Every head takes every fusion: ``pool`` runs the head once on all shots (DPCN pools the foreground vectors, the
    baselines average their prototypes), the others run it once per shot and fuse the predictions."""
    plain = [Evaluation(1, "own"), Evaluation(1, "foreign")]
    return plain + ([Evaluation(5, "own", fusion) for fusion in KSHOT_FUSIONS] if row.five_shot else [])


# ======================================================================================================================
# Settings of a call
# ======================================================================================================================


@dataclass
class Setup:
    """What every job of one call shares: the budget, where records go, the caches."""

    args: argparse.Namespace
    base: TrainConfig
    budget: dict[str, Any]
    benchmark: str
    benchmark_tag: str
    results: Path
    copies: list[Path]
    out: Path

    def config(self, row: Row, seed: int) -> TrainConfig:
        """The training config of ``row`` at ``seed`` (its model overrides on top of the preset's)."""
        overrides = {**self.base.model_overrides, **row.overrides}
        return TrainConfig.from_dict({**self.base.to_dict(), "model": row.model, "seed": seed,
                                      "train_on_novel": row.train_on_novel, "model_overrides": overrides})

    def run_dir(self, row: Row, seed: int) -> Path:
        b, images = self.budget, self.base.synthetic_images_per_class
        tag = (f"{self.args.preset}-{self.benchmark_tag}" + (f"-{images}-images" if images else "")
               + f"-{b['epochs']}x{b['episodes_per_epoch']}")
        return self.out / tag / f"{row.key}-seed{seed}"

    def record(self, row: Row, seed: int, evaluation: Evaluation, metrics: dict[str, Any], *,
               train_seconds: float, eval_seconds: float) -> dict[str, Any]:
        """One record of the results file (scores in percent; hole and body fill as fractions)."""
        return {
            "row": row.key, "label": row.label, "seed": seed, "shots": evaluation.shots,
            "supports": evaluation.supports, "fusion": evaluation.fusion,
            "budget": self.budget, "benchmark": self.benchmark, "preset": self.args.preset, "fold": self.base.fold,
            "test_episodes": self.args.eval_episodes, "test_seed": TEST_SEED,
            "model": row.model, "model_overrides": dict(row.overrides), "train_on_novel": row.train_on_novel,
            "mIoU": metrics["mIoU"], "FB-IoU": metrics["FB-IoU"], "per_class_IoU": metrics["per_class_IoU"],
            "hole_fill": metrics.get("hole_fill"), "body_fill": metrics.get("body_fill"),
            "train_seconds": round(float(train_seconds), 2), "eval_seconds": round(float(eval_seconds), 2),
            "threads": torch.get_num_threads(),
        }

    def key(self, row: Row, seed: int, evaluation: Evaluation) -> str:
        return record_key(self.record(row, seed, evaluation, {"mIoU": 0.0, "FB-IoU": 0.0, "per_class_IoU": {}},
                                      train_seconds=0.0, eval_seconds=0.0))


def make_setup(args: argparse.Namespace) -> Setup:
    options: dict[str, Any] = {"epochs": args.epochs, "episodes_per_epoch": args.episodes_per_epoch,
                               "eval_episodes": args.eval_episodes, "eval_seeds": (TEST_SEED,), "fold": 0}
    if args.images_per_class is not None:
        options["synthetic_images_per_class"] = args.images_per_class
    if args.preset == "tiny":  # tests only: the tiny backbone must be frozen for the feature caches
        options["model_overrides"] = {"train_layer4": False}
    options = {k: v for k, v in options.items() if v is not None}
    base = resolve_config(args.preset, **options)
    budget = {"epochs": base.epochs, "episodes_per_epoch": base.episodes_per_epoch, "batch_size": base.batch_size,
              "optimizer": {"sgd": "SGD", "adamw": "AdamW"}[base.optimizer], "lr": base.learning_rate}
    tag = benchmark = make_source(base).benchmark.tag
    if base.synthetic_images_per_class is not None:
        benchmark += f" ({base.synthetic_images_per_class} images per class)"
    results = Path(args.results)
    copies = [Path(p) for p in args.copy] if args.copy is not None else \
        ([packaged_results_path()] if results.resolve() == RESULTS.resolve() else [])
    return Setup(args, base, budget, benchmark, tag, results, copies, Path(args.out))


def job_list(rows: list[Row], seeds: list[int]) -> list[tuple[int, Row]]:
    """Seeds outermost, then rows in priority order: a batch stopped early has the first rows at every seed."""
    return [(seed, row) for seed in seeds for row in rows]


def shard_jobs(jobs: list[tuple[int, Row]], shard: int, shards: int) -> list[tuple[int, Row]]:
    return jobs[shard::shards]


# ======================================================================================================================
# Running the jobs
# ======================================================================================================================


class Runner:
    """Trains and evaluates the jobs of one process, sharing one training and one test feature cache."""

    def __init__(self, setup: Setup, log=print) -> None:
        self.setup = setup
        self.log = log
        base = setup.base
        holder = build_model("prototype", base.model_config())  # the backbone every row shares
        self.train_cache = FeatureCache(holder, dtype=getattr(torch, base.cache_dtype), key=source_key(base))
        self.test_cache = FeatureCache(holder, dtype=torch.float32, key=source_key(base))
        self.source = make_source(base)

    def _add(self, record: dict[str, Any]) -> None:
        added = append_records(self.setup.results, [record], copies=self.setup.copies)
        state = "recorded" if added else "already recorded"
        fusion = f" {record['fusion']}" if record["fusion"] else ""
        self.log(f"{record['row']} seed {record['seed']} {record['shots']}-shot{fusion}, {record['supports']} "
                 f"supports: mIoU {record['mIoU']:.1f} ({state})")

    def run_job(self, seed: int, row: Row) -> int:
        """Every missing evaluation of ``row`` at ``seed``; trains (or resumes) the model first when needed.

        Returns the number of records added."""
        setup = self.setup
        done = recorded_keys(setup.results)
        pending = [e for e in evaluations_of(row) if setup.key(row, seed, e) not in done]
        if not pending:
            return 0
        cfg = setup.config(row, seed)
        run_dir = setup.run_dir(row, seed)
        own = Evaluation(1, "own")
        metrics_file = run_dir / "metrics.json"
        if not metrics_file.is_file():  # training unfinished or never started: train, then the protocol's evaluation
            self.log(f"training {row.key} seed {seed} into {run_dir}")
            metrics = run_experiment(cfg, run_dir, resume=(run_dir / "checkpoint.pt").is_file(), progress=False,
                                     train_cache=self.train_cache, test_cache=self.test_cache, figures=False)
        else:
            metrics = json.loads(metrics_file.read_text())
        count = 0
        if own in pending and metrics.get("episodes") == setup.args.eval_episodes \
                and metrics.get("eval_seeds") == [TEST_SEED]:
            self._add(setup.record(row, seed, own, metrics, train_seconds=metrics["train_seconds"],
                                   eval_seconds=metrics["eval_seconds"]))
            pending.remove(own)
            count += 1
        if not pending:
            return count
        model, trained_cfg = load_trained_model(run_dir / "checkpoint.pt")
        self.test_cache.check_key(source_key(trained_cfg), model, torch.float32)
        for evaluation in pending:
            started = time.perf_counter()
            scores = self.evaluate(model, trained_cfg, evaluation)
            self._add(setup.record(row, seed, evaluation, scores,
                                   train_seconds=metrics["train_seconds"] if evaluation == own else 0.0,
                                   eval_seconds=time.perf_counter() - started))
            count += 1
        return count

    def evaluate(self, model, cfg: TrainConfig, evaluation: Evaluation) -> dict[str, Any]:
        """Score a trained 1-shot model by the protocol (test seed 0), as ``evaluation`` says."""
        if evaluation.shots != 1:
            overrides = {**cfg.model_overrides, "kshot_fusion": evaluation.fusion}
            cfg = TrainConfig.from_dict({**cfg.to_dict(), "shots": evaluation.shots, "model_overrides": overrides})
            evaluated = build_model(cfg.model, cfg.model_config())
            evaluated.load_state_dict(model.state_dict())
            model = evaluated.eval()
        episodes = episodes_for_config(cfg, "test", seed=TEST_SEED, episodes=self.setup.args.eval_episodes,
                                       source=self.source)
        if evaluation.supports == "foreign":
            episodes = ForeignSupports(episodes)
        return summarise_runs([evaluate(model, episodes, batch_size=cfg.eval_batch_size, progress=False,
                                        feature_cache=self.test_cache)])


# ======================================================================================================================
# The estimate
# ======================================================================================================================


def estimate(setup: Setup, rows: list[Row], seeds: list[int], episodes: int, log=print) -> dict[str, float]:
    """Time one short training per head kind and a few evaluations, single-threaded; extrapolate to the batch.

    Each head is trained for one epoch of ``episodes`` episodes twice on warm caches' images; the second run is
    timed (the first fills the caches). DPCN's ablation rows are costed as DPCN (removing a module only makes it
    cheaper, S = 7 a little dearer). Evaluations are timed on ``episodes`` test episodes and scaled to the batch's."""
    torch.set_num_threads(1)
    runner = Runner(setup, log=lambda line: None)
    args = setup.args
    per_episode: dict[str, float] = {}
    per_image: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for model in dict.fromkeys(row.model for row in rows):
            row = next(r for r in rows if r.model == model)
            cfg = TrainConfig.from_dict({**setup.config(row, 0).to_dict(), "epochs": 1,
                                         "episodes_per_epoch": episodes, "eval_episodes": min(episodes, 50)})
            epoch_seconds, misses = [], []
            for attempt in range(2):  # the second run sees the same episodes, all cached: pure training time
                before = runner.train_cache.misses
                run_dir = Path(folder) / f"{model}-{attempt}"
                run_experiment(cfg, run_dir, progress=False, train_cache=runner.train_cache,
                               test_cache=runner.test_cache, figures=False)
                epoch_seconds.append(json.loads((run_dir / "history.jsonl").read_text().splitlines()[-1])["seconds"])
                misses.append(runner.train_cache.misses - before)
            if misses[0] > misses[1]:
                per_image.append(max(0.0, epoch_seconds[0] - epoch_seconds[1]) / (misses[0] - misses[1]))
            per_episode[model] = epoch_seconds[1] / episodes
            log(f"{model}: one epoch of {episodes} episodes in {epoch_seconds[1]:.1f} s on cached features "
                f"({epoch_seconds[0]:.1f} s while filling the cache)")
        dpcn_row = next(r for r in rows if r.model == "dpcn") if any(r.model == "dpcn" for r in rows) else rows[0]
        model = build_model(dpcn_row.model, setup.config(dpcn_row, 0).model_config()).eval()
        cfg = TrainConfig.from_dict({**setup.config(dpcn_row, 0).to_dict(), "eval_episodes": episodes})
        eval_seconds: dict[tuple[int, str | None], float] = {}
        saved = args.eval_episodes
        args.eval_episodes = episodes
        try:
            for evaluation in (Evaluation(1, "own"), Evaluation(5, "own", "pool"), Evaluation(5, "own", "mask_avg")):
                runner.evaluate(model, cfg, evaluation)  # warm the test cache
                started = time.perf_counter()
                runner.evaluate(model, cfg, evaluation)
                eval_seconds[(evaluation.shots, evaluation.fusion)] = (time.perf_counter() - started) / episodes
        finally:
            args.eval_episodes = saved
    steps = setup.base.epochs * setup.base.episodes_per_epoch
    scale = args.eval_episodes
    one_shot = eval_seconds[(1, None)] * scale
    five = {f: eval_seconds[(5, "pool" if f == "pool" else "mask_avg")] * scale for f in KSHOT_FUSIONS}
    cpu = 0.0
    for seed in seeds:
        for row in rows:
            cpu += per_episode[row.model] * steps + 2 * one_shot
            if row.five_shot:
                cpu += sum(five.values())
    images = len(runner.source.image_ids("train")) + len(runner.source.image_ids("test"))
    fill = images * max(per_image) if per_image else 0.0
    jobs = job_list(rows, seeds)
    result = {"jobs": len(jobs), "cpu_hours": (cpu + 2 * fill) / 3600,
              "wall_hours_two_shards": (cpu / 2 + fill) / 3600,
              "train_seconds_per_episode": per_episode, "one_shot_eval_seconds": one_shot,
              "five_shot_eval_seconds": five, "images_to_cache_per_shard": images,
              "cache_fill_seconds_per_shard": fill}
    return result


# ======================================================================================================================
# Command line
# ======================================================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's (the main job's: 20)")
    parser.add_argument("--episodes-per-epoch", type=int, default=None, help="default: the preset's (600)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="training seeds, every row")
    parser.add_argument("--rows", nargs="+", choices=[row.key for row in ROWS], default=None,
                        help="only these rows (default: all, in priority order)")
    parser.add_argument("--eval-episodes", type=int, default=1000, help="test episodes (test seed 0)")
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th job starting at i, single-threaded "
                        "(two processes on two cores: 0/2 and 1/2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 with --shard i/n, n > 1)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results file (default docs/results.json)")
    parser.add_argument("--copy", type=Path, nargs="*", default=None,
                        help="identical copies of the results file (default: the packaged copy, with the default "
                             "--results; none otherwise)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "synthetic-results",
                        help="where trained models are kept (ignored by git)")
    parser.add_argument("--estimate", action="store_true", help="time a short training, print the batch's CPU hours")
    parser.add_argument("--estimate-episodes", type=int, default=96, help="episodes of the estimate's timings")
    parser.add_argument("--preset", choices=("cpu", "tiny"), default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--images-per-class", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        shard, shards = (int(v) for v in args.shard.split("/"))
    except ValueError:
        raise SystemExit(f"--shard {args.shard}: use i/n, e.g. 0/2 and 1/2.") from None
    if not 0 <= shard < shards:
        raise SystemExit(f"--shard {args.shard}: use i/n with 0 <= i < n, e.g. 0/2 and 1/2.")
    setup = make_setup(args)
    rows = [ROW_BY_KEY[k] for k in args.rows] if args.rows else list(ROWS)
    rows = [row for row in ROWS if row in rows]  # always the priority order
    if args.estimate:
        result = estimate(setup, rows, args.seeds, args.estimate_episodes)
        print(json.dumps(result, indent=2))
        print(f"estimate: {result['jobs']} trainings, {result['cpu_hours']:.1f} CPU hours single-threaded, "
              f"{result['wall_hours_two_shards']:.1f} wall hours with two shards (each shard caches "
              f"{result['images_to_cache_per_shard']} images once: included)")
        return
    threads = args.threads if args.threads is not None else (1 if shards > 1 else None)
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    jobs = shard_jobs(job_list(rows, args.seeds), shard, shards)
    runner = Runner(setup)
    added = 0
    for seed, row in jobs:
        added += runner.run_job(seed, row)
    print(f"shard {shard}/{shards}: {len(jobs)} jobs, {added} new records in "
          f"{(time.perf_counter() - started) / 60:.1f} min; records in {setup.results}")


if __name__ == "__main__":
    main()
