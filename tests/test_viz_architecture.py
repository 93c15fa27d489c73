"""The architecture diagram follows the config and the built model, and draws readable PNGs (no overlapping text)."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dpcn_lite.backbones import build_backbone  # noqa: E402
from dpcn_lite.model import DPCN  # noqa: E402
from dpcn_lite.model_config import BACKBONES, get_preset  # noqa: E402
from dpcn_lite.utils import seed_everything  # noqa: E402
from dpcn_lite.viz.architecture import (  # noqa: E402
    BACKBONE_INFO, HIGHLIGHTS, architecture_blocks, architecture_figure, draw_architecture, feature_grid,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def by_name(blocks) -> dict:
    return {b.name: b for b in blocks}


def test_blocks_follow_the_cpu_preset() -> None:
    blocks = by_name(architecture_blocks())  # None = the cpu preset: Lite0, 160 px -> 20 x 20, C = 64, S = 5
    assert all(b.enabled for n, b in blocks.items() if n != "prior")  # the prior stands in only when SAM is off
    assert not blocks["prior"].enabled
    assert "3×160×160" in blocks["query"].shape and "2×160×160" in blocks["output"].shape
    assert "64×20×20" in blocks["reduce_query"].shape and "152×20×20" in blocks["backbone"].shape
    assert "windows 5×1, 3×3, 1×5" in blocks["sam"].label
    assert "S = 5" in blocks["dcm_kernels"].label and blocks["dcm_kernels"].shape == "v 5×1, h 1×5, s 5×5"
    assert "64×25" in blocks["dcm_kernels"].label  # the S^2 prototypes
    assert blocks["fusion"].shape.startswith(f"{get_preset('cpu').fusion_channels}×20×20")
    assert blocks["fusion"].shape.endswith("= 3·64+64+3+1")
    assert [b.name for b in architecture_blocks()][-1] == "output"


def test_blocks_follow_overrides_shots_and_image_size() -> None:
    config = get_preset("paper", channels=32, kernel_size=7, dcm_kernels=("v", "s"), sam_windows=((1, 1),),
                        square_prototypes="direct")
    blocks = by_name(architecture_blocks(config, shots=5, image_size=400))
    assert "K = 5 shots" in blocks["support"].label and "5×3×400×400" in blocks["support"].shape
    assert "5×32×50×50" in blocks["reduce_support"].shape and "2048×50×50" in blocks["backbone"].shape
    assert blocks["dcm_kernels"].shape == "v 7×1, s 7×7" and "S = 7" in blocks["dcm_kernels"].label
    assert "($P_{fg}$) 32×49" in blocks["dcm_kernels"].label  # direct: p_{S^2} pooled from P_fg
    assert "windows 1×1" in blocks["sam"].label
    assert "all K shots pooled" in blocks["dcm_kernels"].label and "kshot_fusion" not in blocks
    per_shot = by_name(architecture_blocks(config.replace(kshot_fusion="vote"), shots=5))
    assert "vote of the 5" in per_shot["kshot_fusion"].label and "per shot" in per_shot["sam"].label
    assert "kshot_fusion" not in by_name(architecture_blocks(config.replace(kshot_fusion="vote"), shots=1))


@pytest.mark.parametrize("switch, off", [("use_sam", {"sam"}), ("use_ffm", {"ffm", "prior"}),
                                         ("use_dcm", {"dcm_kernels", "dcm_conv", "prior"})])
def test_switching_a_module_off_disables_its_blocks(switch: str, off: set) -> None:
    config = get_preset("cpu", **{switch: False})
    blocks = architecture_blocks(config)  # the prior is drawn off unless it stands in for SAM
    assert {b.name for b in blocks if not b.enabled} == off
    fusion = by_name(blocks)["fusion"]
    assert fusion.shape.startswith(f"{config.fusion_channels}×20×20")
    if switch == "use_sam":  # the plain cosine prior feeds FFM instead
        assert by_name(blocks)["prior"].enabled and "M_{act}" not in fusion.label
    if switch == "use_dcm":
        assert "no DCM" in fusion.label


def test_every_module_off_leaves_the_prototype_concat() -> None:
    config = get_preset("cpu", use_sam=False, use_ffm=False, use_dcm=False)
    blocks = by_name(architecture_blocks(config))
    assert {n for n, b in blocks.items() if not b.enabled} == {"sam", "prior", "ffm", "dcm_kernels", "dcm_conv"}
    assert blocks["fusion"].shape == "128×20×20\n= 64+64"


def test_backbone_table_matches_the_built_backbones() -> None:
    assert set(BACKBONE_INFO) == set(BACKBONES)
    for name in BACKBONES:
        backbone = build_backbone(name, pretrained=False)
        assert BACKBONE_INFO[name][1:3] == (backbone.mid_channels, backbone.high_channels), name


@pytest.mark.parametrize("overrides, shots", [({}, 2), ({"use_sam": False, "use_ffm": False, "use_dcm": False}, 1)])
def test_shapes_match_a_real_forward_pass(overrides: dict, shots: int) -> None:
    """The stride-8 grid rounds up (100 px -> 13, not 12) and the fused width is what the model concatenates."""
    seed_everything(0)
    config = get_preset("tiny", **overrides)
    model = DPCN(config).eval()
    masks = torch.zeros(1, shots, 100, 100, dtype=torch.long)
    masks[..., 30:70, 30:70] = 1
    with torch.no_grad():
        out = model(torch.randn(1, 3, 100, 100), torch.randn(1, shots, 3, 100, 100), masks,
                    return_intermediates=True)
    fused = out.intermediates["fused"]
    assert fused.shape[-1] == feature_grid(100) == 13
    blocks = by_name(architecture_blocks(config, shots=shots, image_size=100))
    assert blocks["fusion"].shape.startswith(f"{fused.shape[1]}×13×13")
    assert f"{tuple(out.intermediates['query_reduced'].shape[1:])}" == "(16, 13, 13)"
    assert "16×13×13" in blocks["reduce_query"].shape and f"{shots}×16×13×13" in blocks["reduce_support"].shape
    assert f"2×{100}×{100}" in blocks["output"].shape and tuple(out.logits.shape[1:]) == (2, 100, 100)


def test_unknown_highlight_raises_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="kshot") as error:
        architecture_figure(highlight="attention")
    assert all(name in str(error.value) for name in HIGHLIGHTS)
    plt.close("all")


def text_problems(fig) -> tuple[list, list]:
    """Pairs of overlapping texts, and block texts that leave their block's box (or the figure)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    extents = [(t, t.get_window_extent(renderer)) for t in texts]
    overlapping = [(a.get_text(), b.get_text()) for (a, ea), (b, eb) in itertools.combinations(extents, 2)
                   if ea.overlaps(eb)]
    boxes = {p.get_gid(): p.get_window_extent(renderer) for p in fig.axes[0].patches if p.get_gid()}
    outside = []
    for text, extent in extents:
        frame = boxes.get(text.get_gid(), fig.bbox)
        if not (frame.x0 <= extent.x0 and extent.x1 <= frame.x1 and frame.y0 <= extent.y0 and extent.y1 <= frame.y1):
            outside.append(text.get_text())
    return overlapping, outside


@pytest.mark.parametrize("preset, overrides, highlight, shots", [
    ("cpu", {}, None, 1),
    ("cpu", {}, "dcm", 1),
    ("paper", {}, "kshot", 5),
    ("paper", {"kshot_fusion": "vote"}, "decoder", 5),
    ("cpu", {"use_sam": False, "use_ffm": False, "use_dcm": False}, None, 1),
    ("cpu", {"use_sam": False}, "prototypes", 1),
    ("paper", {"use_ffm": False}, "ffm", 1),
    ("paper", {"use_dcm": False}, "sam", 1),
])
def test_figure_has_no_overlapping_text(preset: str, overrides: dict, highlight, shots: int) -> None:
    fig = architecture_figure(get_preset(preset, **overrides), highlight=highlight, shots=shots)
    try:
        assert 12 <= fig.get_figwidth() <= 14
        overlapping, outside = text_problems(fig)
        assert not overlapping, overlapping
        assert not outside, outside
    finally:
        plt.close(fig)


def test_highlight_marks_only_its_blocks() -> None:
    fig = architecture_figure(highlight="sam")
    try:
        thick = {p.get_gid() for p in fig.axes[0].patches if p.get_gid() and p.get_linewidth() > 2}
        assert thick == {"sam"}
    finally:
        plt.close(fig)


def test_draw_architecture_writes_a_png_and_closes_it(tmp_path) -> None:
    before = plt.get_fignums()
    path = tmp_path / "sub" / "arch.png"
    assert draw_architecture(highlight="dcm", path=path) is None
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert plt.get_fignums() == before
