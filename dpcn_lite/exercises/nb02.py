"""Checks for notebook 02 (backbone features): the stride-8 grid size, the mid/high-level features of Lite0, PCA
colours, a mask on the feature grid and a cosine-similarity map.

Each check runs the learner's function on small seeded inputs, compares it with the library (the backbone's own
forward, :func:`dpcn_lite.viz.activations.pca_rgb`, :func:`dpcn_lite.modules.prototypes.resize_support_mask`,
``torch.nn.functional.cosine_similarity``), prints one ``✓`` line when it agrees and raises
:class:`~dpcn_lite.exercises.ExerciseError` with a hint when it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dpcn_lite.exercises import call_answer as _call, ExerciseError, expect, expect_close, passed
from dpcn_lite.modules.prototypes import resize_support_mask
from dpcn_lite.viz.activations import pca_rgb

__all__ = ["check_cosine_map", "check_feature_grid_size", "check_mask_on_grid", "check_mid_and_high",
           "check_pca_to_rgb"]


# --- the stride-8 grid -----------------------------------------------------------------------------------------------

GRID_SIZES = (160, 473, 100, 97, 57, 64, 9)


def check_feature_grid_size(answer: Callable[[int], int]) -> None:
    """``answer(image_size)``: the side of the stride-8 feature grid; each of the three stride-2 stages rounds up
    (a 3×3 or 5×5 convolution with padding k // 2 maps n pixels to ceil(n / 2)), so 473 px -> 60."""
    what = "feature_grid_size"
    for size in GRID_SIZES:
        got = _call(answer, size, what=what, hint="three stages, each n -> ceil(n / 2).")
        expect(isinstance(got, (int, np.integer)) and not isinstance(got, bool),
               f"{what}: return an int, got {type(got).__name__} (use // and integer arithmetic).")
        expected = -(-size // 8)
        if int(got) == expected:
            continue
        if int(got) == size // 8:
            hint = "size // 8 rounds down; every stride-2 stage rounds up (ceil), so 473 px gives 60, not 59."
        elif int(got) == round(size / 8):
            hint = "round() is not what the convolutions do: each stride-2 stage rounds up (ceil)."
        elif int(got) == 8:
            hint = "8 is the output stride; return the grid side, image_size divided by 8 and rounded up."
        else:
            hint = "the grid side is ceil(image_size / 8) (one ceil(n / 2) per stride-2 stage gives the same)."
        raise ExerciseError(f"{what}: {size} px -> you returned {got}, the backbone gives {expected}. Hint: {hint}")
    passed(f"{what}: right for {', '.join(map(str, GRID_SIZES))} px (ceil(size / 8))")


# --- mid- and high-level features -------------------------------------------------------------------------------------


def check_mid_and_high(answer: Callable[..., tuple[torch.Tensor, torch.Tensor]], backbone: Any) -> None:
    """``answer(backbone, images)``: (mid, high) of a Lite0 backbone run stage by stage; mid = concat(112-channel
    stage, 40-channel stage) on the channel axis, high = the last stage applied to the 112-channel stage."""
    what = "mid_and_high_features"
    images = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = backbone(images)
    got = _call(answer, backbone, images.clone(), what=what,
                hint="run backbone.stem, then low_blocks, middle_blocks one by one, then high_stage.")
    expect(isinstance(got, tuple | list) and len(got) == 2, f"{what}: return two tensors, (mid, high).")
    mid, high = got
    expect(isinstance(mid, torch.Tensor) and isinstance(high, torch.Tensor), f"{what}: return two tensors.")
    if mid.shape == reference.high.shape and high.shape == reference.mid.shape:
        raise ExerciseError(f"{what}: the first tensor has {mid.shape[1]} channels; return (mid, high) in that order.")
    if mid.shape == reference.mid.shape and not torch.allclose(mid, reference.mid, atol=1e-5):
        low_first = torch.cat([reference.mid[:, 112:], reference.mid[:, :112]], dim=1)  # Lite0: 112 + 40 channels
        if torch.allclose(mid, low_first, atol=1e-5):
            raise ExerciseError(f"{what}: mid has the 40-channel stage first; put the deeper (112-channel) stage "
                                "first, like DPCN's concat(layer3, layer2), so the weights that follow line up.")
    if mid.dim() == 4 and mid.shape[1] != reference.mid.shape[1] and mid.shape[0] == 2 * images.shape[0]:
        raise ExerciseError(f"{what}: mid has {mid.shape[0]} images; concatenate on the channel axis (dim=1).")
    expect_close(mid, reference.mid, what=f"{what}, mid", atol=1e-4,
                 hint="mid = torch.cat([stage_112, stage_40], dim=1), stage_40 after the low blocks, stage_112 after "
                      "the middle blocks.")
    if high.shape == reference.high.shape and not torch.allclose(high, reference.high, atol=1e-4):
        raise ExerciseError(f"{what}: high differs from the backbone's; apply high_stage to the 112-channel stage "
                            "(the output of the middle blocks), not to the concatenation or the 40-channel stage.")
    expect_close(high, reference.high, what=f"{what}, high", atol=1e-4,
                 hint="high = backbone.high_stage(stage_112).")
    passed(f"{what}: mid {tuple(mid.shape[1:])} and high {tuple(high.shape[1:])} equal the backbone's own forward")


# --- PCA colours ------------------------------------------------------------------------------------------------------


def _pca_inputs() -> list[tuple[str, torch.Tensor]]:
    """Feature maps with three well-separated principal directions (so every SVD finds the same ones), an offset
    that only centring removes, and one map with fewer rows than columns."""
    generator = torch.Generator().manual_seed(3)
    maps = []
    for channels, height, width in ((12, 6, 7), (40, 5, 4)):
        basis = torch.linalg.qr(torch.randn(channels, 3, generator=generator))[0]
        scores = torch.randn(height * width, 3, generator=generator) * torch.tensor([6.0, 3.0, 1.5])
        noise = 0.05 * torch.randn(height * width, channels, generator=generator)
        pixels = scores @ basis.T + noise + 4.0 * torch.rand(channels, generator=generator)
        maps.append((f"a {channels}×{height}×{width} map", pixels.T.reshape(channels, height, width)))
    return maps


def check_pca_to_rgb(answer: Callable[[torch.Tensor], np.ndarray]) -> None:
    """``answer(features)``: ``C×H×W`` -> ``H×W×3``, the first three principal components each min-max scaled to
    [0, 1]; a component may come out flipped (1 - the library's), since a direction has no sign."""
    what = "pca_to_rgb"
    for name, features in _pca_inputs():
        expected = pca_rgb(features)
        got = _call(answer, features.clone(), what=what, hint="pixels = features.reshape(C, H*W).T, one row a cell.")
        got = got.detach().cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got, dtype=np.float64)
        height, width = expected.shape[:2]
        if got.shape == (3, height, width):
            raise ExerciseError(f"{what}: shape {got.shape}; return H×W×3 (colour last), e.g. .reshape(H, W, 3).")
        expect(got.shape == expected.shape, f"{what}: on {name}, shape {got.shape}, expected {expected.shape}.")
        expect(got.min() >= -1e-6 and got.max() <= 1 + 1e-6,
               f"{what}: values from {got.min():.3g} to {got.max():.3g}; min-max scale each component to [0, 1].")
        for c in range(3):
            if np.allclose(got[..., c], expected[..., c], atol=1e-4) or \
                    np.allclose(got[..., c], 1 - expected[..., c], atol=1e-4):
                continue
            component = got[..., c].ravel()
            others = [expected[..., k].ravel() for k in range(3) if k != c]
            if any(abs(np.corrcoef(component, other)[0, 1]) > 0.999 for other in others):
                hint = "the components are out of order; np.linalg.svd sorts them, take rows 0, 1, 2 of Vt."
            elif np.isclose(got.max(axis=(0, 1)), 1).sum() < 3:
                hint = "scale each of the three components to [0, 1] on its own (min and max per column)."
            else:
                hint = ("centre the cells first (subtract the mean over cells of every channel), then project on "
                        "the first three right singular vectors of the (H·W)×C matrix.")
            raise ExerciseError(f"{what}: on {name}, component {c} differs from the library's pca_rgb (or its "
                                f"flip). Hint: {hint}")
    passed(f"{what}: agrees with dpcn_lite.viz.activations.pca_rgb on {len(_pca_inputs())} maps (up to sign)")


# --- a mask on the feature grid ---------------------------------------------------------------------------------------


def _mask_inputs() -> list[tuple[str, torch.Tensor, tuple[int, int]]]:
    ring = torch.zeros(40, 40, dtype=torch.long)
    yy, xx = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    distance = ((yy - 19.5) ** 2 + (xx - 21.0) ** 2).sqrt()
    ring[(distance < 14) & (distance > 7)] = 1
    ring[((distance >= 14) & (distance < 15.5)) | ((distance <= 7) & (distance > 5.5))] = 255
    bar = torch.zeros(17, 23, dtype=torch.long)
    bar[4:9, 2:20] = 1
    bar[3, :] = 255
    return [("a 40×40 ring with a 255 band", ring, (5, 5)), ("a 17×23 bar", bar, (3, 4))]


def check_mask_on_grid(answer: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]) -> None:
    """``answer(label, size)``: a ``H×W`` label (1 class, 0 rest, 255 ignore) -> an ``h×w`` float mask on the feature
    grid, (label == 1) resized bilinearly with align_corners=True, 255 counted as background (the library's
    ``resize_support_mask``, PFENet's convention)."""
    what = "mask_on_grid"
    for name, label, size in _mask_inputs():
        expected = resize_support_mask(label, size)[0]
        got = _call(answer, label.clone(), size, what=what,
                    hint="F.interpolate wants a float N×C×H×W tensor: (label == 1).float()[None, None].")
        expect(isinstance(got, torch.Tensor), f"{what}: return a tensor, got {type(got).__name__}.")
        if got.dim() > 2 and all(n == 1 for n in got.shape[:-2]):
            got = got.reshape(got.shape[-2:])  # a 1×h×w or 1×1×h×w answer is fine
        expect(tuple(got.shape) == tuple(size), f"{what}: shape {tuple(got.shape)}, expected {size}.")
        got = got.float()
        if torch.allclose(got, expected, atol=1e-5):
            continue
        binary = (label == 1).float()[None, None]
        as_foreground = (label != 0).float()[None, None]
        if torch.allclose(got, F.interpolate(binary, size=size, mode="bilinear", align_corners=False)[0, 0],
                          atol=1e-5):
            hint = "use align_corners=True, the convention of PFENet and DPCN (the corner pixels map to corners)."
        elif bool(((got == 0) | (got == 1)).all()):
            hint = "the mask holds only 0 and 1: that is nearest; resize bilinearly to keep partial coverage."
        elif torch.allclose(got, F.interpolate(as_foreground, size=size, mode="bilinear",
                                               align_corners=True)[0, 0], atol=1e-5) or float(got.max()) > 1:
            hint = "255 pixels counted as the class; take (label == 1) before resizing."
        else:
            hint = "F.interpolate((label == 1).float()[None, None], size, mode='bilinear', align_corners=True)."
        raise ExerciseError(f"{what}: on {name} the mask differs from resize_support_mask's. Hint: {hint}")
    passed(f"{what}: agrees with resize_support_mask on {len(_mask_inputs())} labels (bilinear, 255 -> background)")


# --- cosine similarity to a vector ------------------------------------------------------------------------------------


def _cosine_inputs() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(4)
    features = 3.0 * torch.relu(torch.randn(6, 4, 5, generator=generator)) + 0.1
    features[:, 0, 0] = 0.0                                            # an all-zero cell: cosine 0, not NaN
    features[:, 1, 2] *= 50.0                                          # a long vector: cosine ignores length
    vector = torch.rand(6, generator=generator) + 0.2
    return [("6×4×5 features with a zero cell and a long cell", features, vector),
            ("the same features, a vector 100 times longer", features, 100.0 * vector)]


def check_cosine_map(answer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``answer(features, vector)``: ``C×H×W`` features and a ``C`` vector -> ``H×W`` cosine similarities, 0 (not
    NaN) at an all-zero cell (``F.cosine_similarity(features, vector[:, None, None], dim=0)``)."""
    what = "cosine_map"
    for name, features, vector in _cosine_inputs():
        expected = F.cosine_similarity(features, vector[:, None, None], dim=0)
        got = _call(answer, features.clone(), vector.clone(), what=what,
                    hint="vector[:, None, None] broadcasts the C vector over the H×W grid.")
        expect(isinstance(got, torch.Tensor), f"{what}: return a tensor, got {type(got).__name__}.")
        expect(tuple(got.shape) == tuple(expected.shape),
               f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)} (one number per cell: sum or "
               "normalise over the channel axis, dim 0).")
        expect(not bool(torch.isnan(got).any()),
               f"{what}: NaN at the all-zero cell; divide by max(norm, eps) or add a small eps to the norms.")
        if torch.allclose(got, expected, atol=1e-5):
            continue
        dot = (features * vector[:, None, None]).sum(dim=0)
        spatial = features / features.norm(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        if torch.allclose(got, dot / features.norm(dim=0).clamp_min(1e-8), rtol=1e-4, atol=1e-5):
            hint = "you normalised the cells but not the vector; divide by the vector's norm too."
        elif torch.allclose(got, dot / vector.norm(), rtol=1e-4, atol=1e-5):
            hint = "you normalised the vector but not the cells; divide by each cell's norm over the channels."
        elif torch.allclose(got, (spatial * (vector / vector.norm())[:, None, None]).sum(dim=0), rtol=1e-4,
                            atol=1e-5):
            hint = "you normalised each channel over the grid; the norms are taken over the C channels (dim 0)."
        elif torch.allclose(got, dot, rtol=1e-4) or float(got.abs().max()) > 1 + 1e-4:
            hint = "a cosine lies in [-1, 1]: divide the dot product by both norms (the cell's and the vector's)."
        else:
            hint = "cos = <f, v> / (|f| |v|), the norms taken over the C channels (dim 0)."
        raise ExerciseError(f"{what}: on {name} the map differs from F.cosine_similarity. Hint: {hint}")
    passed(f"{what}: agrees with F.cosine_similarity on {len(_cosine_inputs())} inputs (0 at a zero cell)")
