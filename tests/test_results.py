"""The results runner (scripts/run_synthetic_results.py) and the results file it writes (dpcn_lite.results)."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import math
import re
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from dpcn_lite.results import (append_records, group_by_setting, load_records, lock_path, packaged_results_path,
                               paired_difference, record_key, scores, setting_key, t_interval, t_quantile_975)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_synthetic_results.py"
TINY = ["--preset", "tiny", "--images-per-class", "8", "--epochs", "1", "--episodes-per-epoch", "4",
        "--eval-episodes", "8"]
FIELDS = {"row", "seed", "shots", "budget", "mIoU", "FB-IoU", "per_class_IoU", "hole_fill", "body_fill", "supports",
          "fusion", "benchmark", "train_seconds", "eval_seconds", "threads"}


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("run_synthetic_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_rows_and_jobs_follow_the_issue(runner):
    keys = [row.key for row in runner.ROWS]
    assert keys[:6] == ["dpcn", "prototype", "no-sam", "no-ffm", "no-dcm", "prior"] and keys[-1] == "oracle"
    shapes = {tuple(row.overrides["dcm_kernels"]) for row in runner.ROWS if "dcm_kernels" in row.overrides}
    assert shapes == {("v",), ("h",), ("s",), ("v", "h"), ("v", "s"), ("h", "s")}  # all three = DPCN itself
    assert {row.overrides.get("kernel_size") for row in runner.ROWS} == {None, 3, 7}
    five = [row.key for row in runner.ROWS if row.five_shot]
    assert five == ["dpcn", "prototype"]
    fusions = [e.fusion for e in runner.evaluations_of(runner.ROW_BY_KEY["dpcn"]) if e.shots == 5]
    assert fusions == ["pool", "mask_avg", "vote", "or"]
    jobs = runner.job_list(list(runner.ROWS), [0, 1, 2, 3, 4])
    assert [seed for seed, _ in jobs[:len(runner.ROWS)]] == [0] * len(runner.ROWS)  # seeds outermost
    for shards in (1, 2, 3):
        parts = [runner.shard_jobs(jobs, i, shards) for i in range(shards)]
        covered = sorted((seed, row.key) for part in parts for seed, row in part)
        assert covered == sorted((seed, row.key) for seed, row in jobs)  # every job exactly once


def test_runner_records_each_evaluation_once_and_resumes(runner, tmp_path, restore_threads):
    results, copy = tmp_path / "results.json", tmp_path / "package" / "results.json"
    options = TINY + ["--rows", "dpcn", "prior", "--seeds", "0", "--results", str(results), "--copy", str(copy),
                      "--out", str(tmp_path / "runs")]
    runner.main(options)
    records = load_records(results)
    assert json.loads(results.read_text())["records"] == records  # valid strict JSON
    assert copy.read_text() == results.read_text()
    assert len(records) == 2 + 4 + 1 + 2 + 1  # DPCN: own, foreign, four fusions, base; prior: own, foreign, base
    for record in records:
        assert FIELDS <= set(record), FIELDS - set(record)
        assert set(record["budget"]) == {"epochs", "episodes_per_epoch", "batch_size", "optimizer", "lr"}
        assert record["benchmark"].startswith("categories-v2")
        assert 0.0 <= record["mIoU"] <= 100.0 and record["seed"] == 0
        assert record["device"] == "cpu" and "gpu" not in record  # where it ran, said on every record
    dpcn = [r for r in records if r["row"] == "dpcn"]
    assert sorted((r["shots"], r["supports"], r["fusion"] or "", r.get("classes", "")) for r in dpcn) == [
        (1, "foreign", "", ""), (1, "own", "", ""), (1, "own", "", "base"), (5, "own", "mask_avg", ""),
        (5, "own", "or", ""), (5, "own", "pool", ""), (5, "own", "vote", "")]
    base = next(r for r in dpcn if r.get("classes") == "base")  # the transfer check: base classes, own episodes
    assert base["episodes"] == min(runner.BASE_EPISODES, base["test_episodes"]) and set(base["per_class_IoU"]) <= {str(c) for c in range(6, 21)}
    own = next(r for r in dpcn if r["supports"] == "own" and r["shots"] == 1 and "classes" not in r)
    assert scores(records, "dpcn", classes="base") == {0: base["mIoU"]}  # never mixed with the protocol's scores
    assert scores(records, "dpcn") == {0: own["mIoU"]} and base["per_class_IoU"] != own["per_class_IoU"]
    assert next(r for r in dpcn if r["supports"] == "own" and r["shots"] == 1)["train_seconds"] > 0
    before = results.read_text()
    runner.main(options)  # resumes: everything is recorded, nothing is trained or added
    assert results.read_text() == before
    # A record lost from the file (but whose model is kept) is evaluated again from the kept checkpoint.
    kept = [r for r in records if not (r["row"] == "prior" and r["supports"] == "foreign")]
    results.write_text(json.dumps({"records": kept}))
    runner.main(options)
    again = load_records(results)
    assert sorted(map(record_key, again)) == sorted(map(record_key, records))


def test_two_shards_write_one_file_and_cover_the_jobs_once(runner, tmp_path, restore_threads):
    results = tmp_path / "results.json"
    common = TINY + ["--rows", "prior", "--seeds", "0", "1", "2", "--results", str(results), "--copy",
                     "--out", str(tmp_path / "runs")]
    runner.main(common + ["--shard", "0/2"])
    assert torch.get_num_threads() == 1  # a shard is single-threaded
    assert sorted({r["seed"] for r in load_records(results)}) == [0, 2]
    runner.main(common + ["--shard", "1/2"])
    records = load_records(results)
    assert sorted((r["seed"], r["supports"], r.get("classes", "")) for r in records) == [
        (s, supports, classes) for s in (0, 1, 2) for supports, classes in (("foreign", ""), ("own", ""),
                                                                            ("own", "base"))]
    assert all(r["threads"] == 1 for r in records)


def test_append_keeps_other_writers_records_and_skips_known_keys(tmp_path):
    path = tmp_path / "results.json"
    first = {"row": "dpcn", "seed": 0, "shots": 1, "supports": "own", "fusion": None, "mIoU": 50.0}
    assert append_records(path, [first]) == [first]
    other = {**first, "seed": 1}
    path.write_text(json.dumps([first, other]))  # another process wrote a record meanwhile (a bare list is read too)
    added = append_records(path, [{**first, "mIoU": 51.0}, {**first, "seed": 2, "mIoU": float("nan")}])
    assert [r["seed"] for r in added] == [2]
    records = load_records(path)
    assert [r["seed"] for r in records] == [0, 1, 2] and records[0]["mIoU"] == 50.0
    assert records[2]["mIoU"] is None  # strict JSON: NaN is written as null
    assert lock_path(path).name == ".results.json.lock"


# ----------------------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------------------


def test_t_interval_of_one_two_three_is_two_plus_minus_t_over_root_three():
    interval = t_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.n == 3
    assert interval.half_width == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    assert interval.verdict == "straddles zero"
    assert interval.text() == "+2.0 [-0.5, +4.5]"
    assert t_interval([5.0]).half_width is None and t_interval([5.0]).verdict == "one seed"
    assert t_interval([1.0, 1.1, 0.9]).verdict == "above zero"
    assert t_interval([-1.0, -1.1, -0.9]).verdict == "below zero"
    with pytest.raises(ValueError):
        t_interval([])


def test_t_quantiles_agree_with_scipy_where_it_is_installed():
    assert t_quantile_975(1) == 12.7062 and t_quantile_975(4) == 2.7764
    with pytest.raises(ValueError):
        t_quantile_975(0)
    stats = pytest.importorskip("scipy.stats")
    for df in (*range(1, 61), 100, 1000):
        assert t_quantile_975(df) == pytest.approx(float(stats.t.ppf(0.975, df)), abs=2e-4)


def _record(row: str, seed: int, miou: float, *, shots: int = 1, supports: str = "own", fusion: str | None = None,
            epochs: int = 20, **extra) -> dict:
    return {"row": row, "seed": seed, "shots": shots, "supports": supports, "fusion": fusion, "mIoU": miou,
            "FB-IoU": 50.0 + miou / 2, "per_class_IoU": {"1": miou}, "hole_fill": 0.1, "body_fill": 0.8,
            "budget": {"epochs": epochs, "episodes_per_epoch": 600, "batch_size": 8, "optimizer": "AdamW",
                       "lr": 0.001},
            "benchmark": "categories-v2", "preset": "cpu", "fold": 0, "test_episodes": 1000, "test_seed": 0,
            "train_seconds": 600.0 if supports == "own" and shots == 1 else 0.0, "eval_seconds": 30.0, "threads": 1,
            **extra}


def test_paired_differences_match_seeds_and_settings():
    records = [_record("dpcn", s, 70.0 + s) for s in range(3)] + [_record("no-sam", s, 69.0 + s - d)
                                                                     for s, d in ((0, 0.0), (1, 1.0), (2, 2.0))]
    records += [_record("no-sam", 9, 10.0)]  # a seed DPCN lacks: not paired
    records += [_record("dpcn", 0, 1.0, epochs=40)]  # another budget: another setting
    groups = group_by_setting(records)
    assert len(groups) == 2
    main = next(g for g in groups.values() if len(g) > 1)
    dpcn, no_sam = scores(main, "dpcn"), scores(main, "no-sam")
    assert dpcn == {0: 70.0, 1: 71.0, 2: 72.0}
    paired = paired_difference(dpcn, no_sam)
    assert paired.seeds == (0, 1, 2) and paired.differences == (1.0, 2.0, 3.0)
    assert paired.interval.mean == 2.0 and paired.interval.low == pytest.approx(2.0 - 4.3027 / math.sqrt(3), 1e-4)
    assert setting_key(records[0]) != setting_key(records[-1])
    five = [_record("dpcn", 0, 75.0, shots=5, fusion="pool"), _record("dpcn", 0, 74.0, shots=5, fusion="vote")]
    assert scores(five, "dpcn", shots=5, fusion="vote") == {0: 74.0} and scores(five, "dpcn") == {}
    with pytest.raises(ValueError):
        scores(five, "dpcn", shots=5)
    assert scores([_record("dpcn", 0, 1.0, supports="foreign")], "dpcn", supports="foreign") == {0: 1.0}
    assert scores(records, "dpcn", metric="hole_fill")[0] == 0.1


def test_the_page_is_rendered_from_a_small_results_file(runner, tmp_path):
    records = []
    for seed in range(5):
        records += [_record("dpcn", seed, 70.0 + seed), _record("prototype", seed, 58.0 + seed, hole_fill=0.05),
                    _record("dpcn", seed, 10.0, supports="foreign"),
                    _record("dpcn", seed, 73.0 + seed, shots=5, fusion="pool")]
    records += [_record("no-sam", seed, 71.0 + seed) for seed in range(2)]
    records += [_record("S7", 0, 60.0, epochs=40), _record("dpcn", 0, 62.0, epochs=40)]
    results, page = tmp_path / "results.json", tmp_path / "docs" / "results.md"
    append_records(results, records)
    page.parent.mkdir()
    page.write_text("# old\n\n" + runner.ANALYSIS_MARKER + "\n\nA hand-written reading.\n")
    runner.main(["--render", "--results", str(results), "--page", str(page)])
    text = page.read_text()
    assert text.startswith("# Results on the synthetic benchmark") and "# old" not in text
    assert text.endswith(runner.ANALYSIS_MARKER + "\n\nA hand-written reading.\n")  # the reading survives
    assert "**Partial.**" in text and "DPCN without SAM (2)" in text and "DPCN without FFM" in text
    # DPCN - prototype is +12 on every seed: a zero-width interval above zero, and the target is met.
    assert "* [x] DPCN − prototype ≥ 8 points, interval above zero: +12.0 [+12.0, +12.0] (n = 5), above zero." \
        in text
    assert "* [ ] Removing SAM lowers mIoU (DPCN − without SAM above zero): -1.0 [-1.0, -1.0] (n = 2), below zero." \
        in text
    assert "5-shot above 1-shot (DPCN, pool − 1-shot, paired): +3.0 [+3.0, +3.0] (n = 5), above zero." in text
    assert "| DPCN (SAM + FFM + DCM) | 65.7 | 66.7 | 72.0 ± 1.6 | 86.0 ± 0.8 | 5 |" in text  # beside Table 3
    # Notebook 09 reads `| model | shots | mIoU ± std | FB-IoU ± std |` rows: each (model, shots) once, right.
    number = r"([\d.]+) ± ([\d.]+)"
    read = [m.groups()[:3] for m in re.finditer(rf"^\| (.+?) \| (\d+) \| {number} \| {number} \|", text, re.M)]
    assert sorted(read) == [("DPCN (SAM + FFM + DCM)", "1", "72.0"), ("DPCN (SAM + FFM + DCM)", "5", "75.0"),
                            ("DPCN without SAM", "1", "71.5"), ("Prototype baseline (PANet-like)", "1", "60.0")]
    assert "## Other budgets" in text and "40 epochs" in text
    assert (page.parent / "images" / "results_paired.png").stat().st_size > 1000


def test_an_empty_results_file_renders_a_page_that_says_so(runner, tmp_path):
    results, page = tmp_path / "results.json", tmp_path / "results.md"
    append_records(results, [])
    runner.main(["--render", "--results", str(results), "--page", str(page)])
    assert "No results yet" in page.read_text() and runner.ANALYSIS_MARKER in page.read_text()


# ----------------------------------------------------------------------------------------------------------------------
# The committed results file and its packaged copy
# ----------------------------------------------------------------------------------------------------------------------


def test_the_packaged_copy_is_identical_and_listed_in_package_data():
    canonical, packaged = ROOT / "docs" / "results.json", packaged_results_path()
    with FileLock(lock_path(canonical)):  # a running batch may be appending right now
        assert packaged.read_text() == canonical.read_text(), \
            "dpcn_lite/data/results.json differs from docs/results.json: copy it (the runner writes both)"
    load_records(packaged)  # valid
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dpcn_lite"]
    relative = packaged.relative_to(ROOT / "dpcn_lite").as_posix()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), (relative, patterns)


def test_a_resumed_run_counts_every_epoch_of_its_training(runner, tmp_path):
    assert runner.training_seconds(tmp_path, 7.0) == 7.0  # no history: the run's own clock
    (tmp_path / "history.jsonl").write_text('{"epoch": 1, "seconds": 30.5}\n{"epoch": 2, "seconds": 29.5}\n')
    assert runner.training_seconds(tmp_path, 0.05) == 60.0  # resumed after its last epoch: the history's sum


@pytest.mark.parametrize("name", ["model", "training", "data"])
def test_the_packaged_benchmark_results_are_the_committed_ones(name):
    from dpcn_lite.results import load_benchmark, packaged_benchmark_path

    committed = ROOT / "benchmarks" / "results" / f"{name}.json"
    assert packaged_benchmark_path(name).read_text() == committed.read_text(), \
        f"dpcn_lite/data/benchmark_{name}.json differs: rerun benchmarks/bench_{name}.py (it writes both)"
    assert load_benchmark(name) == json.loads(committed.read_text())
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dpcn_lite"]
    relative = packaged_benchmark_path(name).relative_to(ROOT / "dpcn_lite").as_posix()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), (relative, patterns)
    with pytest.raises(ValueError, match="choose one of"):
        packaged_benchmark_path("gpu")


def test_the_estimate_counts_only_what_is_not_recorded(runner, tmp_path):
    results = tmp_path / "results.json"
    setup = runner.make_setup(runner.parse_args(TINY + ["--results", str(results), "--copy",
                                                        "--out", str(tmp_path / "runs")]))
    prior = runner.ROW_BY_KEY["prior"]
    rows, seeds = [prior], [0, 1]
    assert [(seed, trains) for seed, _, _, trains in runner.pending_work(setup, rows, seeds)] == [(0, True), (1, True)]
    own = runner.Evaluation(1, "own")
    metrics = {"mIoU": 50.0, "FB-IoU": 60.0, "per_class_IoU": {}}
    append_records(results, [setup.record(prior, 0, own, metrics, train_seconds=1.0, eval_seconds=1.0)])
    left = runner.pending_work(setup, rows, seeds)
    assert [(seed, trains) for seed, _, _, trains in left] == [(0, False), (1, True)]  # seed 0 is trained
    assert [(e.supports, e.classes) for e in left[0][2]] == [("foreign", None), ("own", "base")]
    assert len(left[1][2]) == len(runner.evaluations_of(prior))
