"""``python -m dpcn_lite predict`` on the user's own files: a figure and a mask PNG at the query's size, or a refusal
(one ``error: ...`` line, exit 2) that names the fix. The fixtures are real PNG and JPEG files written with PIL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_utils.errors import DataError
from dpcn_lite.__main__ import main
from dpcn_lite.predict import load_model, mask_path_for, predict_episode, read_mask, write_mask

ROOT = Path(__file__).resolve().parents[1]


def _picture(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like RGB picture: a smooth background and a bright disk."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    image = np.stack([80 + 60 * xx / width, 90 + 50 * yy / height, np.full((height, width), 110.0)], axis=-1)
    disk = (yy - height * 0.5) ** 2 + (xx - width * 0.4) ** 2 < (min(height, width) * 0.25) ** 2
    image[disk] = (230, 190, 40)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), disk


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("own")
    support, disk = _picture(90, 120, 0)
    query, _ = _picture(75, 130, 1)
    paths = {"support": folder / "support.jpg", "mask": folder / "mask.png", "query": folder / "query.jpg"}
    Image.fromarray(support).save(paths["support"], format="JPEG", quality=92)
    Image.fromarray(disk.astype(np.uint8) * 255).save(paths["mask"])
    Image.fromarray(query).save(paths["query"], format="JPEG", quality=92)
    paths["palette_mask"] = folder / "palette.png"
    Image.fromarray(disk.astype(np.uint8)).convert("P").save(paths["palette_mask"])
    paths["wrong_size_mask"] = folder / "small.png"
    Image.fromarray(disk[:60, :80].astype(np.uint8) * 255).save(paths["wrong_size_mask"])
    paths["empty_mask"] = folder / "empty.png"
    Image.fromarray(np.zeros((90, 120), np.uint8)).save(paths["empty_mask"])
    paths["jpeg_mask"] = folder / "mask.jpg"
    Image.fromarray(disk.astype(np.uint8) * 255).save(paths["jpeg_mask"], format="JPEG")
    paths["colour_mask"] = folder / "colour.png"
    colour = np.zeros((90, 120, 3), np.uint8)
    colour[disk] = (255, 0, 0)
    Image.fromarray(colour).save(paths["colour_mask"])
    paths["not_an_image"] = folder / "notes.png"
    paths["not_an_image"].write_text("this is not a picture")
    return paths


def _own(files: dict[str, Path], **changes: Path) -> list[str]:
    chosen = {"support": files["support"], "mask": files["mask"], "query": files["query"], **changes}
    return ["predict", "--support-image", str(chosen["support"]), "--support-mask", str(chosen["mask"]),
            "--query-image", str(chosen["query"])]


def test_predict_on_own_files_writes_the_figure_and_the_mask_at_the_query_size(files, tmp_path, capsys) -> None:
    output = tmp_path / "out" / "prediction.png"
    assert main(_own(files) + ["--out", str(output), "--device", "cpu"]) == 0
    mask_file = mask_path_for(output)
    assert mask_file.name == "prediction-mask.png"
    with Image.open(output) as figure:
        assert figure.format == "PNG" and figure.width > 300
    with Image.open(mask_file) as mask:
        assert mask.format == "PNG" and mask.mode == "L" and mask.size == (130, 75)  # the query's width x height
        assert set(np.unique(np.array(mask)).tolist()) <= {0, 255}
    out = capsys.readouterr().out
    assert "130x75" in out and "prediction-mask.png" in out


def test_a_run_folder_as_checkpoint_and_an_explicit_mask_path(files, tmp_path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--run-dir", str(run), "--episodes", "2", "--epochs", "1",
                 "--episodes-per-epoch", "2", "--batch-size", "2", "--no-progress"]) == 0
    output, mask_output = tmp_path / "fig.png", tmp_path / "masks" / "query.png"
    assert main(_own(files, mask=files["palette_mask"]) + ["--checkpoint", str(run), "--output", str(output),
                                                           "--mask-output", str(mask_output)]) == 0
    with Image.open(mask_output) as mask:
        assert mask.size == (130, 75)
    assert output.is_file() and not mask_path_for(output).exists()


@pytest.mark.parametrize("change, words", [
    ({"mask": "wrong_size_mask"}, "is 80x60 (width x height) but its support image is 120x90: draw the mask on the "
                                  "support image itself"),
    ({"mask": "empty_mask"}, "is empty (every pixel is 0): mark the object with a nonzero value"),
    ({"mask": "jpeg_mask"}, "is a JPEG"),
    ({"mask": "colour_mask"}, "is a colour image"),
    ({"mask": "not_an_image"}, "is not a readable image"),
    ({"query": "not_an_image"}, "is not a readable image"),
    ({"support": "missing.jpg"}, "file not found"),
    ({"mask": "missing.png"}, "support mask not found"),
])
def test_bad_inputs_are_refused_with_the_fix(files, tmp_path, capsys, change, words) -> None:
    changes = {key: files.get(value, tmp_path / value) for key, value in change.items()}
    output = tmp_path / "prediction.png"
    assert main(_own(files, **changes) + ["--out", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err
    assert not output.exists() and not mask_path_for(output).exists()


@pytest.mark.parametrize("extra, words", [
    (["--support-image", "s.jpg"], "add --support-mask and --query-image"),
    (["--mask-output", "m.png"], "--mask-output goes with your own images"),
])
def test_incomplete_arguments_are_refused(extra, words, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["predict", *extra]) == 2
    assert words in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_output_may_not_overwrite_an_input(files, capsys) -> None:
    assert main(_own(files) + ["--mask-output", str(files["mask"])]) == 2
    assert "is one of your input files" in capsys.readouterr().err


def test_the_command_line_exits_2_with_one_error_line(files, tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "dpcn_lite", *_own(files, mask=files["empty_mask"]),
                             "--out", str(tmp_path / "p.png")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("error: support mask empty.png is empty") and len(result.stderr.splitlines()) == 1


def test_predict_episode_from_arrays_matches_the_files(files) -> None:
    model = load_model(device="cpu")
    from_files = predict_episode(model, files["support"], files["mask"], files["query"])
    support = np.array(Image.open(files["support"]).convert("RGB"))
    query = np.array(Image.open(files["query"]).convert("RGB"))
    from_arrays = predict_episode(model, support, read_mask(files["mask"]), query)
    assert from_files.mask.shape == from_arrays.mask.shape == (75, 130)
    assert np.array_equal(from_files.mask, from_arrays.mask)
    assert from_files.probability.min() >= 0 and from_files.probability.max() <= 1
    assert np.mean(from_files.mask == (from_files.probability > 0.5)) > 0.99  # argmax of two logits = P > 0.5


def test_masks_read_nonzero_as_the_object(tmp_path) -> None:
    grey = np.array([[0, 1, 128], [255, 0, 0]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert read_mask(tmp_path / "grey.png").tolist() == [[0, 1, 1], [1, 0, 0]]
    write_mask(read_mask(tmp_path / "grey.png"), tmp_path / "back.png")
    assert np.array(Image.open(tmp_path / "back.png")).tolist() == [[0, 255, 255], [255, 0, 0]]
    with pytest.raises(DataError, match="support image is 4x4"):
        read_mask(grey, (4, 4))
