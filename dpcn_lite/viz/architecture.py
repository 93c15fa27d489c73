"""DPCN's architecture as a block diagram drawn from a :class:`DPCNConfig`, not from a hand-made picture.

The course shows this picture in notebooks 00 and 07 and, with the block being built highlighted, in each module
notebook (02 backbone, 03 prototypes, 04 SAM, 05 FFM, 06 DCM, 08 k-shot). Drawing it from the config keeps it true to
what the library builds: the tensor shapes come from ``channels``, ``image_size`` and the backbone; the SAM windows,
the DCM kernels and S from their fields; a module switched off (``use_sam``/``use_ffm``/``use_dcm``) is drawn dashed
with the path the model takes instead (``dpcn_lite/model.py``).

:func:`architecture_blocks` lists the blocks with their labels and shapes (what the tests read);
:func:`architecture_figure` lays them out; :func:`draw_architecture` shows or saves the figure and closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dpcn_lite.checks import check_choice, check_int
from dpcn_lite.model_config import DPCNConfig, get_preset
from dpcn_lite.viz import FOREGROUND_RGB, finish

if TYPE_CHECKING:
    import matplotlib.axes
    import matplotlib.figure

HIGHLIGHTS = ("backbone", "prototypes", "sam", "ffm", "dcm", "decoder", "kshot")
"""Valid ``highlight`` names: a block group, or ``kshot`` (every block that reads or combines the K shots)."""

# name -> (display name, mid channels, high channels, what mid is, what high is), as dpcn_lite.backbones builds them
# (tests/test_viz_architecture.py checks the channels against the built backbones).
_RESNET50 = (1536, 2048, "layer3, layer2", "layer4")
BACKBONE_INFO: dict[str, tuple[str, int, int, str, str]] = {
    "resnet18": ("ResNet-18", 384, 512, "layer3, layer2", "layer4"),
    "resnet50": ("ResNet-50", *_RESNET50),
    "resnet101": ("ResNet-101", *_RESNET50),
    "resnet50_deep": ("ResNet-50 deep stem", *_RESNET50),
    "efficientnet_lite0": ("EfficientNet-Lite0", 152, 320, "112 ch, 40 ch stages", "blocks 5-6"),
    "tiny_cnn": ("tiny CNN (tests)", 32, 32, "conv4, conv3", "conv5"),
}


@dataclass(frozen=True)
class Block:
    """One box of the diagram. ``label``: title line, then description lines; ``shape``: what it outputs."""

    name: str
    label: str
    shape: str
    enabled: bool
    group: str
    per_shot: bool = False
    """Reads or combines the K support shots (highlighted by ``highlight="kshot"``)."""


def feature_grid(image_size: int) -> int:
    """Side of the stride-8 feature grid: every stride-2 stage rounds up, so 473 px -> 60, 160 px -> 20."""
    return -(-image_size // 8)


def architecture_blocks(config: DPCNConfig | None = None, shots: int = 1,
                        image_size: int | None = None) -> list[Block]:
    """The diagram's blocks for ``config`` (default: the ``cpu`` preset), in data-flow order, shapes per episode."""
    cfg = config if config is not None else get_preset("cpu")
    k = check_int("shots", shots, 1, 64)
    size = check_int("image_size", image_size if image_size is not None else cfg.image_size, 8, 2048)
    g, c, s = feature_grid(size), cfg.channels, cfg.kernel_size
    hw = f"{g}×{g}"
    name, mid, high, mid_text, high_text = BACKBONE_INFO[cfg.backbone]
    pooled = k == 1 or cfg.kshot_fusion == "pool"  # otherwise the head runs once per shot (dpcn_lite.kshot)
    over_k = "mean over K shots" if pooled else "per shot (1-shot head)"
    frozen = f"frozen except\n{high_text} (trained)" if cfg.train_layer4 else "frozen"
    # mask_support_high: the high stage runs again on the leading mid channels (ResNet: layer3) times the mask
    masked_high = f"\nsupport high from\n{mid_text.split(',')[0]}·$M_s$ (masked)" if cfg.mask_support_high else ""
    windows = ", ".join(f"{h}×{w}" for h, w in cfg.sam_windows)
    kernel_shapes = {"v": f"{s}×1", "h": f"1×{s}", "s": f"{s}×{s}"}
    kernels = ", ".join(f"{n} {kernel_shapes[n]}" for n in cfg.dcm_kernels) or "no kernel shapes"
    square = ""
    if "s" in cfg.dcm_kernels:
        source = "$p_s$" if cfg.square_prototypes == "literal" else "$P_{fg}$"
        square = f"\n$p_{{S^2}}$ = pool$_{{S^2}}$({source}) {c}×{s * s}"
    branches = len(cfg.dcm_kernels) if cfg.use_dcm else 1
    parts = [f"{branches}·{c}" if branches > 1 else f"{c}", f"{c}"]  # Eq. 9's terms, in its order
    parts += [str(cfg.num_sam_maps)] if cfg.num_sam_maps else []
    parts += ["1"] if cfg.use_ffm else []
    fused = ["$\\tilde{x}_q^{" + ",".join(cfg.dcm_kernels) + "}$ (DCM)" if cfg.use_dcm else "$\\tilde{x}_q$ (no DCM)",
             "$x_p$ (prototype)"]
    fused += ["$M_{act}$ (SAM)"] if cfg.use_sam else []
    fused += ["$M_{pse}^r$ (FFM)"] if cfg.use_ffm else []
    prior_on = cfg.use_ffm and not cfg.use_sam
    blocks = [
        Block("support", f"Support\nK = {k} shot{'s' if k > 1 else ''}\nimage + mask",
              f"{k}×3×{size}×{size}\nmasks {k}×{size}×{size}", True, "input", per_shot=True),
        Block("query", "Query\nimage", f"3×{size}×{size}", True, "input"),
        Block("backbone", f"Backbone\n{name}\n{frozen}\nstride 8, shared\n\nmid: concat of\n{mid_text}\n"
              f"high: {high_text}{masked_high}", f"mid {mid}×{hw}\nhigh {high}×{hw}", True, "backbone"),
        Block("reduce_support", "1×1 reduction\nsupport (own conv);\n$M_s$: mask to grid",
              f"$x_s$ {k}×{c}×{hw}\n$M_s$ {k}×1×{hw}", True, "backbone", per_shot=True),
        Block("reduce_query", "1×1 reduction\nquery", f"$x_q$ {c}×{hw}", True, "backbone"),
        Block("prototype", f"Prototype (MAP)\np = MAP($x_s$, $M_s$)\n{over_k}", f"p {c}, $x_p$ {c}×{hw}",
              True, "prototypes", per_shot=True),
        Block("sam", f"SAM\nwindows {windows}\n$x_q^h$ vs $x_s^h M_s$\n{over_k}",
              f"$M_{{act}}$ {len(cfg.sam_windows)}×{hw}\n$M_{{pse}}^0$ 1×{hw}", cfg.use_sam, "sam", per_shot=True),
        Block("prior", "Cosine prior\nPFENet's: SAM with\na 1×1 window", f"$M_{{pse}}^0$ 1×{hw}", prior_on,
              "prototypes", per_shot=True),
        Block("ffm", "FFM\nrefine the pseudo mask,\nfilter the query:\n$\\tilde{x}_q = x_q M_{pse}^r + x_q$",
              f"$M_{{pse}}^r$ 1×{hw}\n$\\tilde{{x}}_q$ {c}×{hw}", cfg.use_ffm, "ffm"),
        Block("dcm_kernels", f"DCM kernels\n$P_{{fg}}$: $x_s$ where $M_s$ > {cfg.foreground_threshold:g}\n"
              f"({'all K shots pooled' if pooled else 'per shot'})\n$p_s$ = pool$_S$($P_{{fg}}$) {c}×{s}"
              f"{square}\nS = {s}; a generator each", kernels, cfg.use_dcm, "dcm", per_shot=True),
        Block("dcm_conv", f"DCM conv\ndepthwise, {c} channels,\none kernel set per episode",
              f"{len(cfg.dcm_kernels)} × {c}×{hw}", cfg.use_dcm, "dcm"),
        Block("fusion", "Concat (Eq. 9)\n" + "\n".join(fused), f"{cfg.fusion_channels}×{hw}\n= " + "+".join(parts),
              True, "decoder"),
        Block("decoder", f"Decoder (Eq. 10)\n1×1 conv → {c} ch,\nASPP rates "
              + "/".join(map(str, cfg.aspp_dilations)) + ",\nresidual, classifier", f"logits 2×{hw}", True,
              "decoder"),
    ]
    if not pooled:
        blocks.append(Block("kshot_fusion", f"k-shot fusion\n{cfg.kshot_fusion} of the {k}\nper-shot logits",
                            f"2×{hw}", True, "kshot", per_shot=True))
    blocks.append(Block("output", "Prediction\nbilinear upsampling", f"2×{size}×{size}", True, "decoder"))
    return blocks


# Layout, in inches: column centres and widths, lane heights. Support on top, query in the middle, high-level
# features (SAM, prior) below; arrows run along the lanes and in the gaps between columns.
_WIDTH, _HEIGHT = 14.0, 7.2
_COLUMNS = {"in": (0.65, 1.1), "bb": (2.2, 1.4), "red": (3.92, 1.4), "mid": (5.72, 1.55), "ffm": (7.55, 1.45),
            "dcm": (9.45, 1.7), "fuse": (11.3, 1.4), "dec": (13.1, 1.5)}
_TOP, _UPPER, _MID, _LOW, _BOTTOM = 6.2, 4.9, 3.3, 1.95, 0.8
_PLACES = {"support": ("in", _TOP), "query": ("in", _MID), "backbone": ("bb", None), "reduce_support": ("red", _TOP),
           "reduce_query": ("red", _MID), "prototype": ("mid", _TOP), "sam": ("mid", _LOW),
           "prior": ("mid", _BOTTOM), "ffm": ("ffm", _MID), "dcm_kernels": ("dcm", _UPPER), "dcm_conv": ("dcm", _MID),
           "fusion": ("fuse", None), "decoder": ("dec", _MID), "kshot_fusion": ("dec", _LOW), "output": ("dec", None)}
_FONT, _TITLE_FONT, _LINE = 7.6, 8.6, 0.17
_INK, _MUTED, _OFF = "#1f2a36", "#8a939c", "#b4b9bf"
Box = tuple[float, float, float, float]


def _boxes(blocks: list[Block]) -> dict[str, Box]:
    """Block name -> (x0, y0, x1, y1) in inches; the height follows the number of text lines."""
    names = {b.name for b in blocks}
    out = {}
    for block in blocks:
        column, y = _PLACES[block.name]
        x, width = _COLUMNS[column]
        height = (block.label.count("\n") + block.shape.count("\n") + 2) * _LINE + 0.25
        if block.name == "backbone":  # spans the three lanes it feeds
            y0, y1 = _LOW - 0.45, _TOP + 0.5
        elif block.name == "fusion":  # receives the query lane and everything below it
            y0, y1 = _LOW - 0.45, _MID + 0.75
        else:
            if y is None:  # the prediction sits below the decoder, or below the k-shot fusion
                y = _BOTTOM if "kshot_fusion" in names else _LOW
            y0, y1 = y - height / 2, y + height / 2
        out[block.name] = (x - width / 2, y0, x + width / 2, y1)
    return out


def _arrow(ax: "matplotlib.axes.Axes", points: list[tuple[float, float]], label: str = "", at: int = 0,
           side: str = "above", where: float = 0.5, bridge: bool = False) -> None:
    """A polyline with a head at its end; ``label`` beside segment ``at``, at fraction ``where`` along it."""
    import matplotlib.patheffects as effects

    style: dict = dict(color=_INK, lw=1.1, zorder=3)
    if bridge:  # crosses another line: drawn on top with a white halo, so it reads as a bridge
        style.update(zorder=4, path_effects=[effects.withStroke(linewidth=6, foreground="white")])
    xs, ys = zip(*points)
    ax.plot(xs[:-1], ys[:-1], solid_capstyle="butt", **style)
    ax.annotate("", xy=points[-1], xytext=points[-2], zorder=style["zorder"],
                arrowprops=dict(arrowstyle="-|>,head_length=0.5,head_width=0.22", color=_INK, lw=1.1,
                                shrinkA=0, shrinkB=0))
    if label:
        (xa, ya), (xb, yb) = points[at], points[at + 1]
        dx, dy, ha, va = {"above": (0, 0.05, "center", "bottom"), "below": (0, -0.05, "center", "top"),
                          "left": (-0.06, 0, "right", "center"), "right": (0.06, 0, "left", "center")}[side]
        ax.text(xa + where * (xb - xa) + dx, ya + where * (yb - ya) + dy, label, ha=ha, va=va, fontsize=_FONT,
                color=_INK, zorder=5)


def _draw_block(ax: "matplotlib.axes.Axes", block: Block, box: Box, state: str) -> None:
    """``state``: ``normal``, ``accent`` (highlighted), ``muted`` (another part is highlighted) or ``off``."""
    from matplotlib.patches import FancyBboxPatch

    x0, y0, x1, y1 = box
    face, edge, ink, shape_ink = {
        "normal": ("#e9eff6", "#52667a", _INK, "#1d4f91"),
        "accent": ((*FOREGROUND_RGB, 0.14), FOREGROUND_RGB, _INK, "#8c1d0f"),
        "muted": ("#f5f6f8", "#c3c8ce", _MUTED, _MUTED),
        "off": ("white", _OFF, _OFF, _OFF),
    }[state]
    patch = FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.08", fc=face, ec=edge,
                           lw=2.4 if state == "accent" else 1.1, ls="--" if state == "off" else "-", zorder=2)
    patch.set_gid(block.name)
    ax.add_patch(patch)
    title, _, body = block.label.partition("\n")
    xc = (x0 + x1) / 2
    texts = [ax.text(xc, y1 - 0.1, title + (" (off)" if state == "off" else ""), ha="center", va="top",
                     fontsize=_TITLE_FONT, fontweight="bold", color=FOREGROUND_RGB if state == "accent" else ink),
             ax.text(xc, y0 + 0.1, block.shape, ha="center", va="bottom", fontsize=_FONT, color=shape_ink,
                     linespacing=1.3, fontstyle="italic")]
    if body:
        texts.append(ax.text(xc, y1 - 0.14 - _LINE, body, ha="center", va="top", fontsize=_FONT, color=ink,
                             linespacing=1.4))
    for text in texts:
        text.set_zorder(5)
        text.set_gid(block.name)


def architecture_figure(config: DPCNConfig | None = None, *, highlight: str | None = None, shots: int = 1,
                        image_size: int | None = None) -> "matplotlib.figure.Figure":
    """The diagram as an open figure (for tests and further drawing); each block's patch and texts carry its name as
    ``gid``. :func:`draw_architecture` is the one to call in a notebook."""
    import matplotlib.pyplot as plt

    if highlight is not None:
        check_choice("highlight", highlight, HIGHLIGHTS)
    cfg = config if config is not None else get_preset("cpu")
    blocks = architecture_blocks(cfg, shots, image_size)
    on = {b.name: b.enabled for b in blocks}
    box = _boxes(blocks)
    fig = plt.figure(figsize=(_WIDTH, _HEIGHT), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, _WIDTH)
    ax.set_ylim(0, _HEIGHT)
    ax.axis("off")
    for block in blocks:
        marked = highlight is not None and (block.per_shot if highlight == "kshot" else block.group == highlight)
        state = "off" if not block.enabled else "accent" if marked else "muted" if highlight else "normal"
        _draw_block(ax, block, box[block.name], state)

    def x_of(n: str, dx: float = 0.0) -> float:
        return (box[n][0] + box[n][2]) / 2 + dx

    def y_of(n: str, dy: float = 0.0) -> float:
        return (box[n][1] + box[n][3]) / 2 + dy

    def left(n: str, dy: float = 0.0) -> tuple[float, float]:
        return box[n][0], y_of(n, dy)

    def right(n: str, dy: float = 0.0) -> tuple[float, float]:
        return box[n][2], y_of(n, dy)

    # Inputs -> backbone -> 1x1 reductions; the high-level features go to SAM (or to the prior when SAM is off).
    bb_right = box["backbone"][2]
    _arrow(ax, [right("support"), (box["backbone"][0], y_of("support"))])
    _arrow(ax, [right("query"), (box["backbone"][0], y_of("query"))])
    _arrow(ax, [(bb_right, _TOP), left("reduce_support")], "mid")
    _arrow(ax, [(bb_right, _MID), left("reduce_query")], "mid")
    if on["sam"]:
        _arrow(ax, [(bb_right, y_of("sam")), left("sam")], "high $x^h$", side="below")
    elif on["prior"]:
        _arrow(ax, [(bb_right, _LOW), (x_of("reduce_query"), _LOW), (x_of("reduce_query"), y_of("prior")),
                    left("prior")], "high $x^h$", side="below")
    # Support lane: MAP; the support features go on to DCM under MAP; p runs along the top to the concat.
    _arrow(ax, [right("reduce_support"), left("prototype")], "$x_s$")
    _arrow(ax, [right("prototype"), (x_of("fusion"), y_of("prototype")), (x_of("fusion"), box["fusion"][3])],
           "$x_p$ (p broadcast to the grid)")
    if on["dcm_kernels"]:
        _arrow(ax, [(x_of("reduce_support"), box["reduce_support"][1]), (x_of("reduce_support"), _UPPER),
                    left("dcm_kernels", _UPPER - y_of("dcm_kernels"))], "$x_s$, $M_s$ (p if no $P_{fg}$)", at=1,
               where=0.72)
        _arrow(ax, [(x_of("dcm_kernels"), box["dcm_kernels"][1]), (x_of("dcm_conv"), box["dcm_conv"][3])],
               "kernels", side="right")
    # Pseudo masks into FFM: p from above (bridging the support line), M_pse^0 from SAM or the prior below.
    pse_x = box["ffm"][0] + 0.3
    if on["ffm"]:
        p_y = (box["ffm"][3] + _UPPER) / 2
        _arrow(ax, [(x_of("prototype", 0.45), box["prototype"][1]), (x_of("prototype", 0.45), p_y), (pse_x, p_y),
                    (pse_x, box["ffm"][3])], "p", at=1, bridge=True)
        source = "sam" if on["sam"] else "prior"
        _arrow(ax, [right(source, 0.15), (pse_x, y_of(source, 0.15)), (pse_x, box["ffm"][1])], "$M_{pse}^0$",
               at=1, side="right")
    if on["sam"]:
        _arrow(ax, [right("sam", -0.25), (box["fusion"][0], y_of("sam", -0.25))], "$M_{act}$ (all windows)",
               side="below")
    # Query lane: x_q -> FFM -> DCM -> concat; a module switched off is bypassed by an arc above it.
    stops = ["reduce_query"] + [n for n in ("ffm", "dcm_conv") if on[n]] + ["fusion"]
    labels = {"reduce_query": "$x_q$", "ffm": "$\\tilde{x}_q$", "dcm_conv": ""}
    for a, b in zip(stops, stops[1:]):
        skipped = [n for n in ("ffm", "dcm_conv") if box[a][2] < box[n][0] and box[n][2] < box[b][0]]
        if skipped:
            xa, xb, arc = box[a][2] + 0.15, box[b][0] - 0.15, max(box[n][3] for n in skipped) + 0.15
            note = ("$\\tilde{x}_q = x_q$" if "ffm" in skipped else "$\\tilde{x}_q$") + (
                ", fused once" if "dcm_conv" in skipped else "")
            _arrow(ax, [right(a), (xa, _MID), (xa, arc), (xb, arc), (xb, _MID), (box[b][0], _MID)],
                   f"bypass: {note}", at=2)
        else:
            _arrow(ax, [right(a), (box[b][0], _MID)], labels[a], side="below" if a == "reduce_query" else "above")
    if on["ffm"]:
        y_ref = _MID - 0.75
        _arrow(ax, [(box["ffm"][2] - 0.3, box["ffm"][1]), (box["ffm"][2] - 0.3, y_ref), (box["fusion"][0], y_ref)],
               "$M_{pse}^r$", at=1)
    # Concat -> decoder -> (k-shot fusion) -> prediction.
    _arrow(ax, [(box["fusion"][2], _MID), left("decoder")], "$x_{out}$")
    chain = ["decoder"] + (["kshot_fusion"] if "kshot_fusion" in box else []) + ["output"]
    for a, b in zip(chain, chain[1:]):
        _arrow(ax, [(x_of(a), box[a][1]), (x_of(b), box[b][3])], "logits" if a == "decoder" else "", side="right")

    title = (f"DPCN as built from its config: {BACKBONE_INFO[cfg.backbone][0]}, {image_size or cfg.image_size} px, "
             f"C = {cfg.channels}, S = {cfg.kernel_size}, K = {shots}"
             + (f", highlighted: {highlight}" if highlight else ""))
    ax.text(0.1, _HEIGHT - 0.1, title, ha="left", va="top", fontsize=11, fontweight="bold", color=_INK)
    ax.text(0.1, 0.08, "Shapes per episode (batch left out); feature grid = input / 8, rounded up.\n"
            "Dashed grey: switched off in this config.", ha="left", va="bottom", fontsize=_FONT, color="#55606b",
            linespacing=1.3)
    return fig


def draw_architecture(config: DPCNConfig | None = None, *, highlight: str | None = None, shots: int = 1,
                      image_size: int | None = None, path: str | Path | None = None) -> None:
    """Draw DPCN's block diagram for ``config`` (default: the ``cpu`` preset) and show it, or save it to ``path``.

    ``highlight`` colours one part in the course's accent colour and mutes the rest: one of ``HIGHLIGHTS``
    (``"kshot"`` marks every block that reads the K shots). ``shots`` is K; ``image_size`` defaults to the config's.
    """
    finish(architecture_figure(config, highlight=highlight, shots=shots, image_size=image_size), path)


__all__ = ["BACKBONE_INFO", "HIGHLIGHTS", "Block", "architecture_blocks", "architecture_figure", "draw_architecture",
           "feature_grid"]
