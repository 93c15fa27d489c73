"""The reading of docs/results.md (scripts/write_results_reading.py): in step with the records, and refusing to write
a sentence the records contradict."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest

from dpcn_lite.results import load_records, paired_difference, results_text, scores

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "write_results_reading.py"
RECORDS = load_records(ROOT / "docs" / "results.json")


@pytest.fixture(scope="module")
def reading():
    spec = importlib.util.spec_from_file_location("write_results_reading", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_the_committed_page_reads_the_committed_records(reading, capsys):
    assert reading.main(["--check"]) == 0, capsys.readouterr().err


def test_check_fails_when_the_page_is_stale(reading, tmp_path):
    page = tmp_path / "results.md"
    page.write_text((ROOT / "docs" / "results.md").read_text() + "\nA sentence no record gave.\n")
    assert reading.main(["--check", "--page", str(page)]) == 1


def test_the_reading_quotes_the_paired_intervals_of_the_records(reading):
    text = reading.write(RECORDS)
    dpcn = scores(RECORDS, "dpcn")
    for row in ("prototype", "no-sam", "no-dcm", "S3"):
        interval = paired_difference(dpcn, scores(RECORDS, row)).interval
        assert f"{interval.text()} (n = {interval.n})" in text, row
    trained = {(r["row"], r["seed"]) for r in RECORDS if r["shots"] == 1 and r["supports"] == "own"
               and "classes" not in r}
    assert f"{len(RECORDS)} evaluations of {len(trained)} trained models" in text


def test_records_that_contradict_a_sentence_stop_the_writer_and_name_it(reading, tmp_path):
    changed = copy.deepcopy(RECORDS)
    dpcn = scores(RECORDS, "dpcn")
    for record in changed:  # without DCM now scores 3 points below DPCN on every seed
        if record["row"] == "no-dcm" and record["shots"] == 1 and record["supports"] == "own" \
                and "classes" not in record and record["seed"] in dpcn:
            record["mIoU"] = dpcn[record["seed"]] - 3.0
    with pytest.raises(reading.ClaimBroken, match="removing DCM raises mIoU"):
        reading.write(changed)
    page = tmp_path / "results.md"
    before = (ROOT / "docs" / "results.md").read_text()
    page.write_text(before)
    results = tmp_path / "results.json"
    results.write_text(results_text(changed))
    with pytest.raises(SystemExit):
        reading.main(["--results", str(results), "--page", str(page)])
    assert page.read_text() == before  # nothing written


def test_what_is_left_lists_each_row_short_of_five_seeds(reading):
    text = reading.what_is_left(reading.Reading(RECORDS))
    for row, name in reading.NAMES.items():
        missing = 5 - len(scores(RECORDS, row))
        assert (f"{name} (" in text) == (missing > 0), row


def test_a_square_kernel_subset_level_with_dpcn_breaks_the_table_5_sentence(reading):
    """Table 5's bullet says every subset keeping the square kernel scores below all three shapes: a record set where
    S×1 + S×S scores as DPCN does must stop the writer on that sentence."""
    changed = copy.deepcopy(RECORDS)
    dpcn = scores(RECORDS, "dpcn")
    for record in changed:
        if record["row"] == "kernels-vs" and record["shots"] == 1 and record["supports"] == "own" \
                and "classes" not in record and record["seed"] in dpcn:
            record["mIoU"] = dpcn[record["seed"]] + (0.5 if record["seed"] % 2 else -0.5)
    with pytest.raises(reading.ClaimBroken, match="every subset that keeps the square kernel"):
        reading.write(changed)
    text = reading.write(RECORDS)
    square = paired_difference(dpcn, scores(RECORDS, "kernels-s")).interval
    assert f"the S×S kernel only {square.text()} (n = {square.n}, {square.verdict})" in text.replace("\n  ", " ")


def test_a_single_strip_clearly_above_dpcn_breaks_the_level_sentence(reading):
    """The bullet calls each single strip level with all three shapes: records where the 1×S kernel only scores
    5 points above DPCN on every seed must stop the writer on that sentence."""
    changed = copy.deepcopy(RECORDS)
    dpcn = scores(RECORDS, "dpcn")
    for record in changed:
        if record["row"] == "kernels-h" and record["shots"] == 1 and record["supports"] == "own" \
                and "classes" not in record and record["seed"] in dpcn:
            record["mIoU"] = dpcn[record["seed"]] + 5.0 + 0.1 * record["seed"]
    with pytest.raises(reading.ClaimBroken, match="each single strip is level"):
        reading.write(changed)


def test_the_dcm_at_s3_sentence_follows_the_sign_of_its_interval(reading):
    """Whether DCM helps once its kernels fit the grid is read from S3 − without DCM: records where S = 3 scores at
    least 5 points above DPCN without DCM on every seed must say DCM helps; the committed ones, what they show."""
    changed = copy.deepcopy(RECORDS)
    no_dcm = scores(RECORDS, "no-dcm")
    for record in changed:
        if record["row"] == "S3" and record["shots"] == 1 and record["supports"] == "own" \
                and "classes" not in record and record["seed"] in no_dcm:
            record["mIoU"] = max(record["mIoU"], no_dcm[record["seed"]] + 5.0 + 0.1 * record["seed"])
    assert "At S = 3, DCM *helps*" in reading.write(changed)
    committed = paired_difference(scores(RECORDS, "S3"), no_dcm).interval
    expected = {"above zero": "DCM *helps*", "straddles zero": "but the interval reaches across zero",
                "below zero": "Even at S = 3"}[committed.verdict]
    assert expected in reading.write(RECORDS)
