"""The results table of the synthetic benchmark: the paper's ablations (Tables 3, 4, 5, 7) with paired seeds.

Every row is trained on fold 0 with the cpu preset and the main job's recipe (unless ``--epochs`` /
``--episodes-per-epoch`` say otherwise), with the same training seeds, and evaluated on the same 1,000 test episodes
(test seed 0). Each trained model is evaluated 1-shot with its own supports and with the supports of another class
(``ForeignSupports``); DPCN and the prototype baseline also 5-shot (the 1-shot model given five supports) with every
k-shot fusion of Table 7.

Each finished evaluation is appended to ``docs/results.json`` (and to its packaged copy) at once, so an interrupted
batch keeps what it finished and a second call skips it: the script resumes. Trained models stay under the ignored
``runs/synthetic-results/`` (per budget), half-trained ones resume from their last epoch.

    python scripts/run_synthetic_results.py --estimate                 # CPU and wall hours of what is left
    python scripts/run_synthetic_results.py --shard 0/2 &              # the batch on two cores: one process each,
    python scripts/run_synthetic_results.py --shard 1/2 &              # single-threaded, every other job
    python scripts/run_synthetic_results.py --render                   # docs/results.md from the records so far
    python scripts/write_results_reading.py                            # its reading, checked against the records
    python scripts/run_synthetic_results.py --rows dpcn prototype --seeds 5 6   # some rows, more seeds

``--device cuda`` trains and evaluates on a GPU in float32 (no autocast, no TF32), and each record says where it ran
(``device``, ``gpu``); every record so far was made on the CPU. On one H200 with 16 cores, sixteen single-threaded
processes had not finished a single training after 7.5 minutes (one takes 8-11 minutes on one CPU core), so the
batch is not faster there as it stands; where that time went was not measured.

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

from data_utils.files import atomic_write_text
from dpcn_lite.checkpoint import load_trained_model
from dpcn_lite.config import KSHOT_FUSIONS, TrainConfig, resolve_config
from dpcn_lite.evaluate import ForeignSupports, evaluate, summarise_runs
from dpcn_lite.experiment import episodes_for_config, make_source, run_experiment, source_key
from dpcn_lite.feature_cache import FeatureCache
from dpcn_lite.model import build_model
from dpcn_lite.model_config import DPCNConfig
from dpcn_lite.results import (Interval, append_records, group_by_setting, load_records, mean_and_sample_std,
                               packaged_results_path, paired_difference, record_key, recorded_keys, scores)
from dpcn_lite.utils import default_device

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.json"
PAGE = ROOT / "docs" / "results.md"
FIGURE = ROOT / "docs" / "images" / "results_paired.png"
TEST_SEED = 0
BASE_EPISODES = 500
"""Episodes of the base-class transfer check (the fold's 15 base classes on test images), at most the test count."""
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
    classes: str | None = None  # None: the fold's novel classes (the protocol); "base": the transfer check


def evaluations_of(row: Row) -> list[Evaluation]:
    """Own and foreign supports 1-shot; 5-shot with every fusion for the rows that have a 5-shot column.

    Every head takes every fusion: ``pool`` runs the head once on all shots (DPCN pools the foreground vectors, the
    baselines average their prototypes), the others run it once per shot and fuse the predictions. Last, the transfer
    check: 1-shot on the fold's base classes (test images), :data:`BASE_EPISODES` episodes."""
    plain = [Evaluation(1, "own"), Evaluation(1, "foreign")]
    kshot = [Evaluation(5, "own", fusion) for fusion in KSHOT_FUSIONS] if row.five_shot else []
    # the transfer check: the same model on the base classes it was trained on (test images it never saw); the
    # oracle has no base/novel split
    base = [] if row.train_on_novel else [Evaluation(1, "own", classes="base")]
    return plain + kshot + base


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
    device: torch.device = torch.device("cpu")

    def config(self, row: Row, seed: int) -> TrainConfig:
        """The training config of ``row`` at ``seed`` (its model overrides on top of the preset's)."""
        overrides = {**self.base.model_overrides, **row.overrides}
        return TrainConfig.from_dict({**self.base.to_dict(), "model": row.model, "seed": seed,
                                      "train_on_novel": row.train_on_novel, "model_overrides": overrides})

    @property
    def base_episodes(self) -> int:
        return min(BASE_EPISODES, self.args.eval_episodes)

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
            # the transfer check keeps the setting's test_episodes (same setting group) and says its own count
            **({"classes": evaluation.classes, "episodes": self.base_episodes} if evaluation.classes else {}),
            "budget": self.budget, "benchmark": self.benchmark, "preset": self.args.preset, "fold": self.base.fold,
            "test_episodes": self.args.eval_episodes, "test_seed": TEST_SEED,
            "model": row.model, "model_overrides": dict(row.overrides), "train_on_novel": row.train_on_novel,
            "mIoU": metrics["mIoU"], "FB-IoU": metrics["FB-IoU"], "per_class_IoU": metrics["per_class_IoU"],
            "hole_fill": metrics.get("hole_fill"), "body_fill": metrics.get("body_fill"),
            "train_seconds": round(float(train_seconds), 2), "eval_seconds": round(float(eval_seconds), 2),
            "threads": torch.get_num_threads(), "device": self.device.type,
            **({"gpu": torch.cuda.get_device_name(self.device)} if self.device.type == "cuda" else {}),
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
    device = torch.device(args.device if args.device != "auto" else default_device().type)
    if device.type == "cuda":
        # the same float32 arithmetic as the CPU rows: no float16 autocast, no TF32 in convolutions and products
        options["amp"] = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
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
    return Setup(args, base, budget, benchmark, tag, results, copies, Path(args.out), device)


def job_list(rows: list[Row], seeds: list[int]) -> list[tuple[int, Row]]:
    """Seeds outermost, then rows in priority order: a batch stopped early has the first rows at every seed."""
    return [(seed, row) for seed in seeds for row in rows]


def pending_work(setup: Setup, rows: list[Row], seeds: list[int]) -> list[tuple[int, Row, list[Evaluation], bool]]:
    """What is left: ``(seed, row, missing evaluations, needs training)`` for each job with a missing record.

    A job needs its training when the protocol's own evaluation (1-shot, own supports, novel classes) is missing,
    since that record is written right after the training; a kept model would in fact only resume."""
    done = recorded_keys(setup.results)
    left = []
    for seed, row in job_list(rows, seeds):
        missing = [e for e in evaluations_of(row) if setup.key(row, seed, e) not in done]
        if missing:
            left.append((seed, row, missing, Evaluation(1, "own") in missing))
    return left


def shard_jobs(jobs: list[tuple[int, Row]], shard: int, shards: int) -> list[tuple[int, Row]]:
    return jobs[shard::shards]


# ======================================================================================================================
# Running the jobs
# ======================================================================================================================


def training_seconds(run_dir: Path, fallback: float) -> float:
    """The whole training's seconds: the sum of the epochs' clocks in ``history.jsonl`` (a resumed run's own
    ``train_seconds`` counts only the epochs it trained itself); ``fallback`` without a history."""
    history = run_dir / "history.jsonl"
    if not history.is_file():
        return float(fallback)
    rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    return float(sum(row.get("seconds", 0.0) for row in rows)) or float(fallback)


class Runner:
    """Trains and evaluates the jobs of one process, sharing one training and one test feature cache."""

    def __init__(self, setup: Setup, log=print) -> None:
        self.setup = setup
        self.log = log
        base = setup.base
        holder = build_model("prototype", base.model_config()).to(setup.device)  # the backbone every row shares
        self.train_cache = FeatureCache(holder, dtype=getattr(torch, base.cache_dtype), key=source_key(base))
        self.test_cache = FeatureCache(holder, dtype=torch.float32, key=source_key(base))
        self.source = make_source(base)

    def _add(self, record: dict[str, Any]) -> None:
        added = append_records(self.setup.results, [record], copies=self.setup.copies)
        state = "recorded" if added else "already recorded"
        fusion = f" {record['fusion']}" if record["fusion"] else ""
        classes = f", {record['classes']} classes" if record.get("classes") else ""
        self.log(f"{record['row']} seed {record['seed']} {record['shots']}-shot{fusion}, {record['supports']} "
                 f"supports{classes}: mIoU {record['mIoU']:.1f} ({state})")

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
                                     device=setup.device, train_cache=self.train_cache, test_cache=self.test_cache, figures=False)
        else:
            metrics = json.loads(metrics_file.read_text())
        count = 0
        train_seconds = training_seconds(run_dir, metrics["train_seconds"])
        if own in pending and metrics.get("episodes") == setup.args.eval_episodes \
                and metrics.get("eval_seeds") == [TEST_SEED]:
            self._add(setup.record(row, seed, own, metrics, train_seconds=train_seconds,
                                   eval_seconds=metrics["eval_seconds"]))
            pending.remove(own)
            count += 1
        if not pending:
            return count
        model, trained_cfg = load_trained_model(run_dir / "checkpoint.pt", device=self.setup.device)
        self.test_cache.check_key(source_key(trained_cfg), model, torch.float32)
        for evaluation in pending:
            started = time.perf_counter()
            measured = self.evaluate(model, trained_cfg, evaluation)
            self._add(setup.record(row, seed, evaluation, measured,
                                   train_seconds=train_seconds if evaluation == own else 0.0,
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
            model = evaluated.to(self.setup.device).eval()
        if evaluation.classes == "base":
            index = self.source.class_index("test")  # the base classes the test images hold (as model selection)
            base = [c for c in self.source.fold_classes(cfg.fold, "train") if len(index.get(c, [])) > cfg.shots]
            episodes = episodes_for_config(cfg, "test", seed=TEST_SEED, episodes=self.setup.base_episodes,
                                           source=self.source, classes=base)
        else:
            episodes = episodes_for_config(cfg, "test", seed=TEST_SEED, episodes=self.setup.args.eval_episodes,
                                           source=self.source)
        if evaluation.supports == "foreign":
            episodes = ForeignSupports(episodes)
        return summarise_runs([evaluate(model, episodes, batch_size=cfg.eval_batch_size, progress=False,
                                        device=self.setup.device, amp=cfg.amp, feature_cache=self.test_cache)])


# ======================================================================================================================
# The estimate
# ======================================================================================================================


def estimate(setup: Setup, rows: list[Row], seeds: list[int], episodes: int, log=print) -> dict[str, Any]:
    """Time one short training per head kind and a few evaluations, single-threaded; extrapolate to the batch.

    Each head trains one epoch of ``episodes`` episodes twice: the first fills the feature cache, the second sees
    the same episodes, all cached, and its epoch clock (``history.jsonl``) gives the training time per episode. The
    difference between the two, per image cached, costs each shard's cache fill. DPCN's ablation rows are costed as
    DPCN (removing a module only makes it cheaper, S = 7 a little dearer). Evaluations are timed on ``episodes`` test
    episodes (1-shot, 5-shot pooled, 5-shot fused per shot) and scaled to the batch's."""
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
    base_share = min(BASE_EPISODES, args.eval_episodes) / args.eval_episodes
    cpu = 0.0
    left = pending_work(setup, rows, seeds)  # only what is not recorded yet
    for _, row, missing, trains in left:
        cpu += per_episode[row.model] * steps if trains else 0.0
        cpu += sum(five[e.fusion] if e.shots > 1 else one_shot * (base_share if e.classes else 1.0) for e in missing)
    images = len(runner.source.image_ids("train")) + len(runner.source.image_ids("test"))
    fill = images * max(per_image) if per_image and left else 0.0
    result = {"jobs": len(left), "trainings": sum(trains for *_, trains in left),
              "cpu_hours": (cpu + 2 * fill) / 3600,
              "wall_hours_two_shards": (cpu / 2 + fill) / 3600,
              "train_seconds_per_episode": per_episode, "one_shot_eval_seconds": one_shot,
              "five_shot_eval_seconds": five, "images_to_cache_per_shard": images,
              "cache_fill_seconds_per_shard": fill}
    return result


# ======================================================================================================================
# The page: docs/results.md from the records
# ======================================================================================================================

MIN_SEEDS = 5
PAPER_NOTE = ("paper: PASCAL-5i, ResNet-50, 1-shot, fold 0 / mean of the four folds (mIoU, %); another dataset, "
              "backbone and budget, so compare signs and orderings, not values")
PAPER_1SHOT: dict[str, tuple[float, float]] = {  # row -> (fold 0, mean): Tables 3, 4, 5; PFENet as DPCN's Table 1
    "dpcn": (65.7, 66.7), "no-sam": (67.1, 65.4), "no-ffm": (63.5, 64.7), "no-dcm": (63.6, 64.5),
    "S3": (65.2, 65.9), "S7": (65.5, 66.1),
    "kernels-s": (64.7, 65.0), "kernels-h": (64.9, 65.2), "kernels-vh": (63.2, 64.7), "prior": (61.7, 60.8),
}
PAPER_5SHOT: dict[str, tuple[float, float]] = {  # Table 7 (its fold-0 "Ours" 69.2 is 70.0 in Table 1)
    "vote": (66.2, 68.1), "mask_avg": (67.2, 68.4), "or": (66.0, 67.6), "pool": (69.2, 69.9)}
SHORT_LABELS = {"prototype": "prototype baseline", "prior": "prior baseline", "no-sam": "without SAM",
                "no-ffm": "without FFM", "no-dcm": "without DCM", "S3": "S = 3", "S7": "S = 7",
                "kernels-v": "kernels v", "kernels-h": "kernels h", "kernels-s": "kernels s",
                "kernels-vh": "kernels v+h",
                "kernels-vs": "kernels v+s", "kernels-hs": "kernels h+s", "square-direct": "square prototypes direct",
                "oracle": "oracle (trained on novel classes)"}
FUSION_NAMES = {"pool": "pool (DPCN: foreground vectors of all shots; baselines: prototypes averaged over shots)",
                "mask_avg": "mask average", "vote": "vote (HSNet)", "or": "mask OR"}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _mean_std(values: list[float], digits: int = 1) -> str:
    if not values:
        return "–"
    mean, std = mean_and_sample_std(values)
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _paper(row: str) -> tuple[str, str]:
    paper = PAPER_1SHOT.get(row)
    return (f"{paper[0]:.1f}", f"{paper[1]:.1f}") if paper else ("–", "–")


def _main_setting(groups: dict[str, list[dict[str, Any]]]) -> str:
    """The setting with the most DPCN 1-shot records (the main budget); ties go to the first."""
    return max(groups, key=lambda k: len(scores(groups[k], "dpcn")))


def _row_label(key: str, records: list[dict[str, Any]]) -> str:
    if key in ROW_BY_KEY:
        return ROW_BY_KEY[key].label
    return next((r.get("label", key) for r in records if r.get("row") == key), key)


def _versus_dpcn(records: list[dict[str, Any]], row: str) -> Interval | None:
    """DPCN − row per seed (1-shot, own supports): positive when the row scores lower than full DPCN."""
    return paired_difference(scores(records, "dpcn"), scores(records, row)).interval


def _describe(interval: Interval | None) -> str:
    """``+2.0 [-0.5, +4.5] (n = 3), straddles zero``; ``+2.0 (one seed)``; ``not measured yet``."""
    if interval is None:
        return "not measured yet"
    if interval.half_width is None:
        return interval.text()
    return f"{interval.text()} (n = {interval.n}), {interval.verdict}"


def _verdict(interval: Interval | None) -> str:
    return "–" if interval is None else interval.verdict


def _checklist(records: list[dict[str, Any]], rows: list[str]) -> list[str]:
    """The "Done when" targets of issue 13, measured."""
    def box(met: bool | None) -> str:
        return "[x]" if met else "[ ]"

    lines = []
    seeds = {row: len(scores(records, row)) for row in rows}
    short = [f"{row} ({n})" for row, n in seeds.items() if n < MIN_SEEDS]
    lines.append(f"* {box(not short)} Every row has at least {MIN_SEEDS} seeds: "
                 + (f"{len(rows) - len(short)} of {len(rows)} rows do; short: {', '.join(short)}." if short
                    else f"all {len(rows)} rows do."))
    proto = _versus_dpcn(records, "prototype")
    met = proto is not None and proto.half_width is not None and proto.mean >= 8 and proto.low > 0
    lines.append(f"* {box(met)} DPCN − prototype ≥ 8 points, interval above zero: {_describe(proto)}.")
    for row, name in (("no-sam", "SAM"), ("no-ffm", "FFM"), ("no-dcm", "DCM")):
        interval = _versus_dpcn(records, row)
        met = interval is not None and interval.verdict == "above zero"
        lines.append(f"* {box(met)} Removing {name} lowers mIoU (DPCN − without {name} above zero): "
                     f"{_describe(interval)}.")
    holes = {row: scores(records, row, metric="hole_fill") for row in ("dpcn", "prototype")}
    bodies = {row: scores(records, row, metric="body_fill") for row in ("dpcn", "prototype")}
    if holes["dpcn"] and holes["prototype"]:
        h_d, h_p = (mean_and_sample_std(list(holes[r].values()))[0] for r in ("dpcn", "prototype"))
        b_d, b_p = (mean_and_sample_std(list(bodies[r].values()))[0] for r in ("dpcn", "prototype"))
        met = h_d <= 0.75 * h_p and abs(b_d - b_p) <= 0.1
        lines.append(f"* {box(met)} DPCN's hole fill ≤ 0.75 × the prototype's, body fill within 0.1 of it: "
                     f"hole {h_d:.3f} vs 0.75 × {h_p:.3f} = {0.75 * h_p:.3f}; body {b_d:.3f} vs {b_p:.3f}.")
    else:
        lines.append("* [ ] DPCN's hole fill ≤ 0.75 × the prototype's, body fill within 0.1: not measured yet.")
    five = paired_difference(scores(records, "dpcn", shots=5, fusion="pool"), scores(records, "dpcn")).interval
    lines.append(f"* {box(five is not None and five.verdict == 'above zero')} 5-shot above 1-shot (DPCN, pool − "
                 f"1-shot, paired): {_describe(five)}.")
    square = _versus_dpcn(records, "square-direct")
    default = DPCNConfig().square_prototypes
    if square is not None and square.verdict == "straddles zero" and square.n >= MIN_SEEDS:
        # no difference over the full seed count: the reading faithful to Eq. 6 stays, the other is the ablation
        lines.append(f"* {box(default == 'literal')} The square-kernel default follows the measurement: literal − "
                     f"direct {_describe(square)}: no difference, so the faithful reading stays; the default is "
                     f"`{default}`.")
    elif square is None or square.verdict in ("straddles zero", "one seed"):
        state = ("not measured yet" if square is None else
                 f"literal − direct {_describe(square)}: no sign yet, the default stays `{default}`")
        lines.append(f"* [ ] The square-kernel default follows the measurement: {state}.")
    else:
        better = "literal" if square.mean > 0 else "direct"
        lines.append(f"* {box(better == default)} The square-kernel default follows the measurement: literal − "
                     f"direct {_describe(square)}: {better} is better; the default is `{default}`.")
    if any(line.startswith("* [ ]") for line in lines):
        lines += ["", "An unchecked box is a target these records do not reach; the reading at the end of this page "
                  "says, for each, what was measured instead and why (*Reading*, below)."]
    return lines


def _rows_table(records: list[dict[str, Any]], rows: list[str], with_paper: bool) -> list[str]:
    head = "| row | " + ("paper F0 | paper mean | " if with_paper else "") + \
        "mIoU | FB-IoU | seeds | DPCN − row, paired [95 % CI] | verdict |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for row in rows:
        miou = list(scores(records, row).values())
        fb = list(scores(records, row, metric="FB-IoU").values())
        interval = None if row == "dpcn" else _versus_dpcn(records, row)
        paper = " | ".join(_paper(row)) + " | " if with_paper else ""
        lines.append(f"| {_row_label(row, records)} | {paper}{_mean_std(miou)} | {_mean_std(fb)} | {len(miou)} | "
                     f"{'(reference)' if row == 'dpcn' else '–' if interval is None else interval.text()} | "
                     f"{'' if row == 'dpcn' else _verdict(interval)} |")
    return lines


def _main_table(records: list[dict[str, Any]], rows: list[str]) -> list[str]:
    """Every row 1-shot, and the 5-shot (pool) evaluations of the 1-shot models beside their rows.

    Its first four columns keep the layout ``| model | shots | mIoU | FB-IoU |`` that notebook 09 reads."""
    lines = ["| model | shots | mIoU | FB-IoU | seeds | mIoU per seed | paired difference [95 % CI] | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        one = scores(records, row)
        evaluations = [(1, None, one)]
        five = scores(records, row, shots=5, fusion="pool")
        if five:
            evaluations.append((5, "pool", five))
        for shots, fusion, found in evaluations:
            if not found:
                continue
            fb = list(scores(records, row, shots=shots, fusion=fusion, metric="FB-IoU").values())
            if shots > 1:
                interval, what = paired_difference(found, one).interval, "5-shot − 1-shot: "
            elif row == "dpcn":
                interval, what = None, "(reference)"
            else:
                interval, what = _versus_dpcn(records, row), "DPCN − row: "
            paired = what + ("" if row == "dpcn" and shots == 1 else "–" if interval is None else interval.text())
            per_seed = ", ".join(f"{found[seed]:.1f}" for seed in sorted(found))
            verdict = "" if row == "dpcn" and shots == 1 else _verdict(interval)
            lines.append(f"| {_row_label(row, records)} | {shots} | {_mean_std(list(found.values()))} | "
                         f"{_mean_std(fb)} | {len(found)} | {per_seed} | {paired} | {verdict} |")
    return lines


def _fusion_table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | evaluation | paper F0 | paper mean | mIoU | FB-IoU | seeds | − its 1-shot, paired | "
             "pool − this fusion, paired |", "|---|---|---|---|---|---|---|---|---|"]
    for row in ("dpcn", "prototype"):
        one = scores(records, row)
        if not one:
            continue
        paper = ("65.7", "66.7") if row == "dpcn" else ("–", "–")
        fb = _mean_std(list(scores(records, row, metric="FB-IoU").values()))
        lines.append(f"| {_row_label(row, records)} | 1-shot | {paper[0]} | {paper[1]} | "
                     f"{_mean_std(list(one.values()))} | {fb} | {len(one)} | | |")
        pool = scores(records, row, shots=5, fusion="pool")
        for fusion in ("vote", "mask_avg", "or", "pool"):
            five = scores(records, row, shots=5, fusion=fusion)
            if not five:
                continue
            gain = paired_difference(five, one).interval
            versus = None if fusion == "pool" else paired_difference(pool, five).interval
            paper = PAPER_5SHOT[fusion] if row == "dpcn" else None
            lines.append(
                f"| {_row_label(row, records)} | 5-shot, {FUSION_NAMES[fusion].split(' (DPCN')[0]} | "
                f"{_fmt(paper and paper[0])} | "
                f"{_fmt(paper and paper[1])} | {_mean_std(list(five.values()))} | "
                f"{_mean_std(list(scores(records, row, shots=5, fusion=fusion, metric='FB-IoU').values()))} | "
                f"{len(five)} | "
                f"{'–' if gain is None else gain.text()} | "
                f"{'' if fusion == 'pool' else '–' if versus is None else versus.text()} |")
    return lines


def _structure_table(records: list[dict[str, Any]], rows: list[str]) -> list[str]:
    lines = ["| row | hole fill | body fill | mIoU, own supports | mIoU, another class's supports | share kept | "
             "mIoU, base classes | base − novel, paired |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        own, foreign = scores(records, row), scores(records, row, supports="foreign")
        if not own and not foreign:
            continue
        hole = list(scores(records, row, metric="hole_fill").values())
        body = list(scores(records, row, metric="body_fill").values())
        kept = paired_difference(foreign, own)
        share = [f / o for f, o in zip((foreign[s] for s in kept.seeds), (own[s] for s in kept.seeds)) if o > 0]
        base = scores(records, row, classes="base")
        gap = paired_difference(base, own).interval
        lines.append(f"| {_row_label(row, records)} | {_mean_std(hole, 3)} | {_mean_std(body, 3)} | "
                     f"{_mean_std(list(own.values()))} | {_mean_std(list(foreign.values()))} | "
                     f"{_fmt(100 * sum(share) / len(share) if share else None, 0)}{' %' if share else ''} | "
                     f"{_mean_std(list(base.values())) if base else '–'} | {'–' if gap is None else gap.text()} |")
    return lines


def _compute_table(records: list[dict[str, Any]], rows: list[str]) -> tuple[list[str], float]:
    lines = ["| row | training seeds | CPU hours (training + evaluation) | threads |", "|---|---|---|---|"]
    total = 0.0
    for row in rows:
        mine = [r for r in records if r.get("row") == row]
        if not mine:
            continue
        hours = sum(float(r.get("train_seconds") or 0) + float(r.get("eval_seconds") or 0) for r in mine) / 3600
        total += hours
        seeds = sorted(scores(records, row))
        threads = sorted({int(r.get("threads") or 0) for r in mine})
        lines.append(f"| {_row_label(row, records)} | {', '.join(map(str, seeds)) or '–'} | {hours:.2f} | "
                     f"{', '.join(map(str, threads))} |")
    return lines, total


def paired_items(records: list[dict[str, Any]], rows: list[str]) -> list[tuple[str, Interval]]:
    """What the figure draws: DPCN − each row, and DPCN's 5-shot fusions − its 1-shot, each with its interval."""
    items = []
    for row in rows:
        interval = None if row == "dpcn" else _versus_dpcn(records, row)
        if interval is not None:
            items.append((f"DPCN − {SHORT_LABELS.get(row, _row_label(row, records))}", interval))
    for fusion in KSHOT_FUSIONS:
        interval = paired_difference(scores(records, "dpcn", shots=5, fusion=fusion), scores(records, "dpcn")).interval
        if interval is not None:
            items.append((f"DPCN 5-shot {fusion} − 1-shot", interval))
    return items


def plot_paired(items: list[tuple[str, Interval]], path: Path) -> None:
    """Each paired difference as a point with its 95 % t-interval and its number of seeds; zero marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dpcn_lite.viz import finish

    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(items), 1) + 1.3), dpi=100)
    colours = {"above zero": "tab:green", "below zero": "tab:red", "straddles zero": "0.45", "one seed": "0.7"}
    for y, (label, interval) in enumerate(reversed(items)):
        ax.errorbar(interval.mean, y, xerr=interval.half_width or 0.0, fmt="o", capsize=3,
                    color=colours[interval.verdict])
    ax.set_yticks(range(len(items)), [f"{label} (n = {i.n})" for label, i in reversed(items)], fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("paired difference per training seed, mIoU points: mean and 95 % t-interval"
                  + (" (grey dots: one seed, no interval yet)" if any(i.half_width is None for _, i in items) else ""))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    finish(fig, path)


def render_page(results: Path, page: Path, figure: Path) -> None:
    """Rewrite ``page`` (and ``figure``) from the records of ``results``; the text below ANALYSIS_MARKER is kept."""
    records = load_records(results)
    groups = group_by_setting(records)
    lines = ["# Results on the synthetic benchmark", ""]
    if not records:
        lines += ["**No results yet**: `python scripts/run_synthetic_results.py` adds them to `docs/results.json`.", ""]
    else:
        main_key = _main_setting(groups)
        main = groups[main_key]
        known = [row.key for row in ROWS]
        rows = known + sorted({r["row"] for r in main} - set(known))
        present = [row for row in rows if scores(main, row)]
        short = [f"{_row_label(row, main)} ({len(scores(main, row))})" for row in rows
                 if 0 < len(scores(main, row)) < MIN_SEEDS]
        missing = [_row_label(row, main) for row in rows if not scores(main, row)]
        if short or missing:
            lines += [f"> **Partial.** The batch has not finished: "
                      + (f"rows with fewer than {MIN_SEEDS} training seeds (seeds so far): {'; '.join(short)}. "
                         if short else "")
                      + (f"Rows not measured yet: {'; '.join(missing)}. " if missing else "")
                      + "Numbers and intervals will change as the batch fills in.", ""]
        first = main[0]
        b = first["budget"]
        seeds = sorted({int(r["seed"]) for r in main})
        compute, hours = _compute_table(main, rows)
        lines += [
            "Made by `python scripts/run_synthetic_results.py --render` from the records in `docs/results.json` "
            f"({len(records)} evaluations); the reading at the end by `python scripts/write_results_reading.py`, "
            "which checks each of its claims against the same records. Every row: the "
            f"`{first['preset']}` preset"
            + (" (frozen EfficientNet-Lite0, 160 px, C = 64)" if first["preset"] == "cpu" else "")
            + f", benchmark `{first['benchmark']}`, fold {first['fold']}, trained 1-shot for {b['epochs']} "
            f"epoch{'s' if b['epochs'] != 1 else ''} × {b['episodes_per_epoch']} episodes (batch {b['batch_size']}, "
            f"{b['optimizer']}, poly LR from {b['lr']:g}), training seeds {', '.join(map(str, seeds))}; each model "
            f"evaluated on the same {first['test_episodes']:,} test episodes (test seed {first['test_seed']}), mIoU "
            f"and FB-IoU in percent, mean ± sample std over the training seeds. {hours:.1f} CPU hours spent on the "
            "rows shown.",
            "",
            "**Paired differences.** Every row is trained with the same seeds as full DPCN; the difference "
            "DPCN − row is taken per seed (same seed, same test episodes), and the page gives its mean and "
            "95 % t-interval (n − 1 degrees of freedom). *above zero*: the whole interval says DPCN is better; "
            "*below zero*: the row is better; *straddles zero*: these seeds cannot tell the two apart.",
            "",
            f"The paper's numbers beside ours are its PASCAL-5i numbers ({PAPER_NOTE}).",
            "",
            "## Targets of issue 13", "", *_checklist(main, [r for r in known]), "",
            "## All rows", "",
            "1-shot, and the 1-shot models of DPCN and the prototype baseline given five supports (the paper's "
            "pooling; the other fusions below).", "",
            *_main_table(main, present), "",
            f"![Paired differences with their 95 % intervals](images/{figure.name})", "",
            "## Baselines and the oracle (the paper quotes PFENet in its Table 1; PANet's PASCAL numbers are not "
            "in our notes)", "",
            *_rows_table(main, [r for r in ("dpcn", "prototype", "prior", "oracle") if r in present], True), "",
            "The oracle is DPCN trained on the novel classes' labels too (`docs/diagnosis.md`): an upper bound for "
            "these features and this budget, never a few-shot result.", "",
            "## Modules (beside the paper's Table 3)", "",
            *_rows_table(main, [r for r in ("dpcn", "no-sam", "no-ffm", "no-dcm") if r in present], True), "",
            "## Kernel size S (Table 4; S = 5 is DPCN)", "",
            *_rows_table(main, [r for r in ("S3", "dpcn", "S7") if r in present], True), "",
            "## Kernel shapes (Table 5; v = S × 1, h = 1 × S, s = S × S; all three is DPCN)", "",
            "The paper's rows: 5×5 only, 1×5 only, 1×5 + 5×1, all three, and without DCM (64.5 mean); the other "
            "subsets are ours.", "",
            *_rows_table(main, [r for r in ("kernels-v", "kernels-h", "kernels-s", "kernels-vh", "kernels-vs",
                                            "kernels-hs", "dpcn", "no-dcm") if r in present], True), "",
            "## The square kernel's source", "",
            "`literal` (DPCN's default, pool_{S²} of the S prototypes as Eq. 6 reads) against `direct` "
            "(pool_{S²} of the foreground vectors); the paper has no such row.", "",
            *_rows_table(main, [r for r in ("dpcn", "square-direct") if r in present], False), "",
            "## k-shot fusion (Table 7): the 1-shot models given five supports", "",
            "`pool` is the paper's rule: DPCN pools the foreground vectors of all shots into one set of kernels "
            "(the prototype baseline averages its prototypes over the shots); the other fusions run the model once "
            "per shot and fuse the five predictions (`dpcn_lite.kshot`). The paper's fold-0 69.2 for its own rule "
            "is 70.0 in its Table 1.", "",
            *_fusion_table(main), "",
            "## Holes and slots, another class's supports, and the base classes", "",
            "Hole fill: share of the targets' hole pixels predicted foreground (lower is better); body fill: share "
            "of the targets' own pixels predicted foreground (higher is better); fractions, mean over the seeds. "
            "The next columns give each model the supports of another class (`ForeignSupports`): a model that "
            "reads its support loses most of its score. The last two are the transfer check: the same model, "
            f"1-shot, on {BASE_EPISODES} episodes of the fold's base classes (the ones it was trained on, on test "
            "images), and that score minus its novel-class score, paired per seed: a large gap means the head "
            "learned the base classes rather than how to match a support.", "",
            *_structure_table(main, rows), "",
            "## Seeds and compute", "", *compute, "",
        ]
        others = [k for k in groups if k != main_key]
        if others:
            lines += ["## Other budgets", "",
                      "Rows trained at another budget or setting are paired with full DPCN at that same budget.", ""]
            for key in others:
                group = groups[key]
                g = group[0]
                lines += [f"**{g['preset']} preset, `{g['benchmark']}`, {g['budget']['epochs']} epochs × "
                          f"{g['budget']['episodes_per_epoch']} episodes, {g['test_episodes']:,} test episodes**", "",
                          *_rows_table(group, [r for r in rows if scores(group, r)], False), ""]
        plot_paired(paired_items(main, present), figure)
    previous = page.read_text() if page.exists() else ""
    lines += [previous[previous.index(ANALYSIS_MARKER):].rstrip("\n") if ANALYSIS_MARKER in previous
              else ANALYSIS_MARKER]
    atomic_write_text("\n".join(lines) + "\n", page)


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
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                        help="where to train and evaluate (default cpu, where every record so far was made; cuda "
                             "runs in float32 without TF32 and records the GPU's name; auto: cuda when visible)")
    parser.add_argument("--estimate", action="store_true", help="time a short training, print the CPU hours of what is not recorded yet")
    parser.add_argument("--estimate-episodes", type=int, default=96, help="episodes of the estimate's timings")
    parser.add_argument("--render", action="store_true", help="render docs/results.md from the records and stop")
    parser.add_argument("--page", type=Path, default=PAGE, help=argparse.SUPPRESS)
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
    if args.render:
        render_page(args.results, args.page, args.page.parent / "images" / FIGURE.name)
        print(f"rendered {args.page} from {args.results}")
        return
    setup = make_setup(args)
    rows = [ROW_BY_KEY[k] for k in args.rows] if args.rows else list(ROWS)
    rows = [row for row in ROWS if row in rows]  # always the priority order
    if args.estimate:
        result = estimate(setup, rows, args.seeds, args.estimate_episodes)
        print(json.dumps(result, indent=2))
        print(f"estimate of what is left: {result['jobs']} jobs ({result['trainings']} trainings), "
              f"{result['cpu_hours']:.1f} CPU hours single-threaded, "
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
