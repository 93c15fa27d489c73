"""Checks for notebook 06 (DCM): adaptive pooling bins, the square prototypes, the kernel shapes, the grouped conv.

Each check runs the learner's function on small seeded inputs, compares it with the library
(:mod:`dpcn_lite.modules.dcm`), prints one ``✓`` line when it agrees and raises
:class:`~dpcn_lite.exercises.ExerciseError` with a hint when it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from dpcn_lite.exercises import call_answer as _call, ExerciseError, expect, expect_close, passed
from dpcn_lite.modules.dcm import DynamicConvolutionModule, dynamic_depthwise_conv_loop, pool_sequence

__all__ = ["check_dynamic_depthwise_conv", "check_generate_kernels", "check_pool_by_bins",
           "check_square_prototypes"]


def _sequence(n: int, channels: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, channels, generator=torch.Generator().manual_seed(seed))


def check_pool_by_bins(answer: Callable[..., Any]) -> None:
    """``answer(vectors, length)``: N x C -> C x length; bin j averages the rows floor(j N / L) to
    ceil((j + 1) N / L) - 1."""
    what = "pool_by_bins"
    hint = ("bin j runs from start = (j * N) // L to end = ceil((j + 1) * N / L) = -((-(j + 1) * N) // L), end "
            "excluded; neighbouring bins may share a vector, and when N < L vectors repeat. Return C x L.")
    for n, length in ((37, 5), (10, 5), (8, 3), (3, 5), (1, 5), (5, 25)):
        vectors = _sequence(n, seed=n)
        got = _call(answer, vectors.clone(), length, what=what, hint=hint)
        expected = pool_sequence(vectors, length)
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (length, vectors.shape[1]) != tuple(expected.shape):
            raise ExerciseError(f"{what}: shape {tuple(got.shape)} is L x C; return C x L (one column per "
                                "prototype), like the library's pool_sequence.")
        expect_close(got, expected, what=f"{what} of N = {n} vectors to L = {length}", hint=hint)
    passed("pool_by_bins: the same bins as F.adaptive_avg_pool1d, overlaps and repeats included")


def _square_reference(vectors: torch.Tensor, size: int, source: str) -> torch.Tensor:
    if source == "literal":
        return pool_sequence(pool_sequence(vectors, size).t(), size * size)
    return pool_sequence(vectors, size * size)


def check_square_prototypes(answer: Callable[..., Any]) -> None:
    """``answer(vectors, size, source)``: the C x size^2 prototypes of the square kernel, "literal" or "direct"."""
    what = "square_prototypes"
    hints = {
        "literal": "literal (Eq. 6): pool P_fg to size prototypes p_s first, then pool that sequence of size "
                   "vectors up to size^2 (each p_s[j] then appears size times in a row).",
        "direct": "direct: pool P_fg itself straight to size^2 prototypes.",
    }
    for n, size in ((37, 5), (11, 3), (2, 3)):
        vectors = _sequence(n, seed=100 + n)
        for source in ("literal", "direct"):
            got = _call(answer, vectors.clone(), size, source, what=what, hint=hints[source])
            expected = _square_reference(vectors, size, source)
            if (source == "literal" and isinstance(got, torch.Tensor) and got.shape == expected.shape
                    and torch.allclose(got, pool_sequence(vectors, size).repeat(1, size), atol=1e-5)
                    and not torch.allclose(got, expected, atol=1e-5)):
                raise ExerciseError(f"{what} ({source}): you repeated the whole sequence p_s size times "
                                    "(p0 p1 p2 p0 p1 p2 ...); pooling repeats each prototype in place "
                                    "(p0 p0 p0 p1 p1 p1 ...).")
            expect_close(got, expected, what=f"{what} ({source}, N = {n}, size = {size})", hint=hints[source])
    passed("square_prototypes: literal repeats each of the size prototypes size times; direct pools P_fg to size^2")


def _seeded_module(channels: int, size: int) -> DynamicConvolutionModule:
    module = DynamicConvolutionModule(channels, size).eval()
    generator = torch.Generator().manual_seed(size)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    return module


def check_generate_kernels(answer: Callable[..., Any]) -> None:
    """``answer(p_s, p_s2, generators)`` -> {"v": B x C x S x 1, "h": B x C x 1 x S, "s": B x C x S x S}."""
    what = "generate_kernels"
    hint = ('generators["v"] and generators["h"] read p_s, generators["s"] reads p_s2; view each output as '
            "B x C x S x 1, B x C x 1 x S and B x C x S x S (the S^2 sequence row by row).")
    b, c, size = 2, 4, 3
    module = _seeded_module(c, size)
    generator = torch.Generator().manual_seed(11)
    p_s = torch.randn(b, c, size, generator=generator)
    p_s2 = torch.randn(b, c, size * size, generator=generator)  # any sequence: not repeated, so a transpose shows
    with torch.no_grad():
        expected = module.kernels(p_s, p_s2)
    got = _call(answer, p_s.clone(), p_s2.clone(), module.generators, what=what, hint=hint)
    expect(isinstance(got, dict) and set(got) == {"v", "h", "s"},
           f"{what}: return a dict with the keys 'v', 'h' and 's'.")
    names = {"v": "the vertical kernel", "h": "the horizontal kernel", "s": "the square kernel"}
    for name in ("v", "h", "s"):
        kernel = got[name]
        if (name == "s" and isinstance(kernel, torch.Tensor) and kernel.shape == expected["s"].shape
                and torch.allclose(kernel, expected["s"].transpose(-1, -2), atol=1e-5)):
            raise ExerciseError(f"{what}: {names[name]} is transposed; read the S^2 sequence row by row "
                                "(.view(B, C, S, S)), so that position i * S + j lands in row i, column j.")
        expect_close(kernel, expected[name], what=f"{what}, {names[name]} '{name}'",
                     hint=hint + " Each shape has its own generator: no shared weights.")
    passed("generate_kernels: v (S x 1), h (1 x S) and s (S x S) as the library's DynamicConvolutionModule makes them")


def check_dynamic_depthwise_conv(answer: Callable[..., Any]) -> None:
    """``answer(features, kernels)``: each sample's own depthwise kernels, "same" padding, as one grouped conv."""
    what = "dynamic_depthwise_conv"
    hint = ("reshape the features to 1 x (B*C) x H x W and the kernels to (B*C) x 1 x kh x kw, call F.conv2d with "
            "groups = B*C and padding = (kh // 2, kw // 2), then view the result as B x C x H x W.")
    generator = torch.Generator().manual_seed(3)
    b, c, h, w = 3, 4, 6, 7
    features = torch.randn(b, c, h, w, generator=generator)
    for kh, kw in ((5, 1), (1, 5), (3, 3), (5, 5)):
        kernels = torch.randn(b, c, kh, kw, generator=generator)
        got = _call(answer, features.clone(), kernels.clone(), what=what, hint=hint)
        expected = dynamic_depthwise_conv_loop(features, kernels)
        if isinstance(got, torch.Tensor) and got.dim() == 4 and tuple(got.shape[-2:]) != (h, w):
            raise ExerciseError(f"{what} with a {kh}x{kw} kernel: the output is {tuple(got.shape[-2:])}, not "
                                f"{(h, w)}; pad each side by half the kernel in THAT direction: "
                                "padding = (kh // 2, kw // 2).")
        expect_close(got, expected, what=f"{what} with {kh}x{kw} kernels", hint=hint, atol=1e-4)
    passed("dynamic_depthwise_conv: one grouped convolution gives every sample its own kernels, output B x C x H x W")
