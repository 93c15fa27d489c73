"""DPCNConfig and the presets: clear errors, channel bookkeeping."""

from __future__ import annotations

import pytest

from dpcn_lite.config import DPCNConfig, PRESETS, get_preset


def test_presets_follow_the_paper_and_the_cpu_plan() -> None:
    paper = get_preset("paper")
    assert (paper.backbone, paper.image_size, paper.channels, paper.kernel_size) == ("resnet50", 473, 256, 5)
    assert paper.sam_windows == ((5, 1), (3, 3), (1, 5)) and paper.train_layer4
    assert paper.fusion_channels == 4 * 256 + 4  # 1028, paper Eq. 9
    cpu = get_preset("cpu")
    assert cpu.backbone == "efficientnet_lite0" and cpu.pretrained and not cpu.train_layer4
    assert not get_preset("tiny").pretrained


def test_overrides_apply_and_are_validated() -> None:
    config = get_preset("paper", use_dcm=False, dcm_kernels=("s",))
    assert config.fusion_channels == 256 + 256 + 3 + 1
    assert get_preset("paper", use_sam=False, use_ffm=False, use_dcm=False).fusion_channels == 2 * 256
    assert get_preset("paper", sam_windows=((1, 1),)).fusion_channels == 4 * 256 + 2  # the paper's COCO setting
    with pytest.raises(ValueError, match="kshot_fusion"):
        get_preset("tiny", kshot_fusion="average")
    with pytest.raises(ValueError, match="odd"):
        get_preset("tiny", kernel_size=4)
    with pytest.raises(ValueError, match="dcm_kernels"):
        get_preset("tiny", dcm_kernels=("v", "diag"))


def test_unknown_preset_and_field_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"\['cpu', 'paper', 'tiny'\]"):
        get_preset("gpu")
    with pytest.raises(ValueError, match="kernel_size"):
        get_preset("tiny", kernel=5)


def test_round_trip_through_a_dict() -> None:
    for name in PRESETS:
        config = get_preset(name)
        assert DPCNConfig.from_dict(config.to_dict()) == config
    assert get_preset("tiny").replace(channels=8).channels == 8


def test_test_scales_are_checked_and_come_back_as_a_tuple_of_floats() -> None:
    from dpcn_lite.model_config import check_test_scales

    assert check_test_scales([0.75, 1]) == (0.75, 1.0)  # a list read from JSON
    for bad in [(), (0,), (4.01,), "1", (1.0,) * 9]:
        with pytest.raises(ValueError, match="TrainConfig.test_scales"):
            check_test_scales(bad, "TrainConfig.test_scales")
