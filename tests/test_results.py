"""The results runner (scripts/run_synthetic_results.py) and the results file it writes (dpcn_lite.results)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from dpcn_lite.results import append_records, load_records, lock_path, record_key

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
    assert len(records) == 2 + 4 + 2  # DPCN: own, foreign, four fusions; prior: own, foreign
    for record in records:
        assert FIELDS <= set(record), FIELDS - set(record)
        assert set(record["budget"]) == {"epochs", "episodes_per_epoch", "batch_size", "optimizer", "lr"}
        assert record["benchmark"].startswith("categories-v2")
        assert 0.0 <= record["mIoU"] <= 100.0 and record["seed"] == 0
    dpcn = [r for r in records if r["row"] == "dpcn"]
    assert sorted((r["shots"], r["supports"], r["fusion"] or "") for r in dpcn) == [
        (1, "foreign", ""), (1, "own", ""), (5, "own", "mask_avg"), (5, "own", "or"), (5, "own", "pool"),
        (5, "own", "vote")]
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
    assert sorted((r["seed"], r["supports"]) for r in records) == [
        (s, supports) for s in (0, 1, 2) for supports in ("foreign", "own")]
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
