"""Diagnose a synthetic benchmark and the cpu preset's recipe on it, and log the result (``docs/diagnosis.md``).

    python scripts/diagnose_benchmark.py --benchmark categories                  # prototype + DPCN, with oracles
    python scripts/diagnose_benchmark.py --benchmark shapes --no-oracle --design "v1 as shipped"
    python scripts/diagnose_benchmark.py --render                                # redraw the page from the log

Each call appends one JSON line to ``docs/diagnosis_log.jsonl`` (the design, the recipe and every number of
``dpcn_lite.diagnosis.diagnose``) and redraws the table in ``docs/diagnosis.md`` between its markers.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "docs" / "diagnosis_log.jsonl"
PAGE = ROOT / "docs" / "diagnosis.md"
BEGIN, END = "<!-- diagnosis table: begin -->", "<!-- diagnosis table: end -->"


def _cell(row: dict | None, key: str = "mIoU") -> str:
    if not row or row.get(key) is None or (isinstance(row[key], float) and math.isnan(row[key])):
        return ""
    return f"{row[key]:.1f}"


def _finite(value):
    """NaN (a class with no episode) becomes null, so the log stays valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _seed_summary(records: list[dict]) -> str:
    """Per design: each model's novel mIoU over training seeds, and DPCN minus each baseline paired by seed."""
    from collections import defaultdict

    import numpy as np
    from scipy import stats

    novel: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for record in records:
        design = (record.get("benchmark", record["dataset"]), record["design"])
        for model in record["models"]:
            novel[design][model][record["train"]["seed"]] = record[model]["novel"]["mIoU"]
    lines = []
    for (benchmark, design), models in novel.items():
        seeds = sorted({seed for values in models.values() for seed in values})
        if len(seeds) < 2:
            continue
        lines.append(f"\n**{benchmark}, {design}: novel mIoU over training seeds {seeds}**\n")
        lines.append("| model | per seed | mean ± std | DPCN − model, paired by seed: mean [95 % t-interval] |")
        lines.append("|---|---|---|---|")
        for model, values in models.items():
            per_seed = [values[s] for s in sorted(values)]
            row = (f"| {model} | {', '.join(f'{v:.1f}' for v in per_seed)} | {np.mean(per_seed):.1f} ± "
                   f"{np.std(per_seed, ddof=1) if len(per_seed) > 1 else 0:.1f} |")
            common = sorted(set(values) & set(models.get("dpcn", {})))
            if model != "dpcn" and len(common) > 1:
                diffs = np.array([models["dpcn"][s] - values[s] for s in common])
                half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
                row += f" {diffs.mean():+.1f} [{diffs.mean() - half:+.1f}, {diffs.mean() + half:+.1f}] (n = {len(diffs)}) |"
            else:
                row += " |"
            lines.append(row)
    return "\n".join(lines) + ("\n" if lines else "")


def render(log: Path = LOG, page: Path = PAGE) -> str:
    """The markdown table of every logged diagnosis, newest last; written into ``page`` between the markers."""
    header = ("| # | benchmark | design | model | steps | seed | fit | base | novel | foreign | oracle | hole / body fill "
              "| raw AUC mid / high | untrained rule | colour rule |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    for number, record in enumerate(records, 1):
        train = record["train"]
        steps = train["epochs"] * (train["episodes_per_epoch"] or 0) // train["batch_size"]
        for model in record["models"]:
            row = record[model]
            fill = row["novel"]
            structure = (f"{fill['hole_fill']:.2f} / {fill['body_fill']:.2f}"
                         if fill.get("hole_fill") is not None else "")
            lines.append(
                f"| {number} | {record.get('benchmark', record['dataset'])} | {record['design']} | {model} | {steps} | "
                f"{train['seed']} | {_cell(row.get('fit'))} | {_cell(row.get('base'))} | **{_cell(row['novel'])}** | "
                f"{_cell(row.get('foreign'))} | {_cell(row.get('oracle'))} | {structure} | "
                f"{record['raw_auc_mid']:.3f} / {record['raw_auc_high']:.3f} | {_cell(record['untrained_rule'])} | "
                f"{_cell(record['colour_rule'])} |")
    table = header + "\n".join(lines) + "\n" + _seed_summary(records)
    if page.exists():
        text = page.read_text()
        if BEGIN in text and END in text:
            before, rest = text.split(BEGIN, 1)
            after = rest.split(END, 1)[1]
            page.write_text(f"{before}{BEGIN}\n{table}{END}{after}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default=None, help="synthetic benchmark name (default: the library's)")
    parser.add_argument("--models", default="prototype,dpcn", help="comma-separated: prototype, prior, dpcn")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (one log line each)")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--episodes", type=int, default=1000, help="novel-class test episodes")
    parser.add_argument("--no-oracle", action="store_true", help="skip the oracle runs (halves the time)")
    parser.add_argument("--oracle-models", default=None, help="comma-separated: oracles for these models only")
    parser.add_argument("--novel-only", action="store_true", help="score novel classes only (no fit, base, foreign)")
    parser.add_argument("--design", default="", help="one line saying what this run tries (goes into the log)")
    parser.add_argument("--overrides", default="{}", help="JSON of DPCNConfig fields, e.g. '{\"use_ffm\": false}'")
    parser.add_argument("--render", action="store_true", help="only redraw docs/diagnosis.md from the log")
    parser.add_argument("--log", type=Path, default=LOG)
    args = parser.parse_args()
    if args.render:
        print(render(args.log))
        return

    from dpcn_lite.config import resolve_config
    from dpcn_lite.diagnosis import diagnose

    options = {"fold": args.fold, "model_overrides": json.loads(args.overrides)}
    if args.benchmark:
        options["synthetic_benchmark"] = args.benchmark
    if args.epochs:
        options["epochs"] = args.epochs
    cfg = resolve_config("cpu", "synthetic", **options)
    models = tuple(m for m in args.models.split(",") if m)
    oracle = False if args.no_oracle else (tuple(args.oracle_models.split(",")) if args.oracle_models else True)
    args.log.parent.mkdir(parents=True, exist_ok=True)

    def log_report(report: dict) -> None:  # one line per finished seed, so an interrupted call keeps what it made
        report["design"] = args.design or report.get("benchmark", "")
        report["models"] = list(models)
        with args.log.open("a") as handle:
            handle.write(json.dumps(_finite(report), allow_nan=False) + "\n")

    diagnose(cfg, models, oracle=oracle, seeds=tuple(args.seeds), novel_only=args.novel_only, episodes=args.episodes,
             on_report=log_report)
    print(render(args.log))


if __name__ == "__main__":
    main()
