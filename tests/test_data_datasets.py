"""Datasets by name: ``get_source`` and the names the command line offers."""

from __future__ import annotations

import pytest

from data_utils.datasets import DATASETS, get_source
from data_utils.synthetic import SyntheticSource
from data_utils.validation import DatasetNotFoundError


def test_names_build_their_sources(tmp_path) -> None:
    assert DATASETS == ("synthetic", "pascal", "coco")
    source = get_source("synthetic", image_size=48, images_per_class=2)
    assert isinstance(source, SyntheticSource) and source.image_size == 48
    for name in ("pascal", "coco"):
        with pytest.raises(DatasetNotFoundError, match=f"data_utils.prepare {name}"):
            get_source(name, root=tmp_path).class_index("test")


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'synthetic', 'pascal' or 'coco'"):
        get_source("voc")
