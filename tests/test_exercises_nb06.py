"""Notebook 06's exercise checks pass the library's answers and name the usual mistakes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dpcn_lite.exercises import ExerciseError, nb06
from dpcn_lite.modules.dcm import dynamic_depthwise_conv, dynamic_depthwise_conv_loop, pool_sequence


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write it")


# --- pool_by_bins ---------------------------------------------------------------------------------------------------


def pool_by_bins(vectors, length):
    n = vectors.shape[0]
    columns = []
    for j in range(length):
        start, end = (j * n) // length, math.ceil((j + 1) * n / length)
        columns.append(vectors[start:end].mean(dim=0))
    return torch.stack(columns, dim=1)


def pool_with_the_library_call(vectors, length):
    return F.adaptive_avg_pool1d(vectors.t()[None], length)[0]


def pool_tensor_split(vectors, length):
    return torch.stack([chunk.mean(dim=0) for chunk in torch.tensor_split(vectors, length)], dim=1)


def pool_equal_bins(vectors, length):
    step = vectors.shape[0] // length
    return torch.stack([vectors[j * step:(j + 1) * step].mean(dim=0) for j in range(length)], dim=1)


def pool_rows_first(vectors, length):
    return pool_by_bins(vectors, length).t()


@pytest.mark.parametrize("answer", [pool_by_bins, pool_with_the_library_call])
def test_pool_by_bins_passes_right_answers(answer, capsys: pytest.CaptureFixture[str]) -> None:
    nb06.check_pool_by_bins(answer)
    assert capsys.readouterr().out.startswith("✓ pool_by_bins")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (pool_tensor_split, "neighbouring bins may share a vector"),
    (pool_equal_bins, "N = 37 vectors to L = 5: values differ"),
    (pool_rows_first, "is L x C; return C x L"),
])
def test_pool_by_bins_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb06.check_pool_by_bins(answer)


def test_equal_bins_with_fewer_vectors_than_bins_is_a_nan() -> None:
    with pytest.raises(ExerciseError, match="NaN"):
        nb06.check_pool_by_bins(lambda v, n: pool_equal_bins(v, n) if v.shape[0] < n else pool_by_bins(v, n))


# --- square_prototypes ----------------------------------------------------------------------------------------------


def square_prototypes(vectors, size, source):
    if source == "literal":
        return pool_sequence(pool_sequence(vectors, size).t(), size * size)
    return pool_sequence(vectors, size * size)


def square_always_direct(vectors, size, source):
    return pool_sequence(vectors, size * size)


def square_tiled(vectors, size, source):
    if source == "literal":
        return pool_sequence(vectors, size).repeat(1, size)
    return pool_sequence(vectors, size * size)


def square_direct_from_p_s(vectors, size, source):
    return pool_sequence(pool_sequence(vectors, size).t(), size * size)


def test_square_prototypes_passes_the_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    nb06.check_square_prototypes(square_prototypes)
    assert capsys.readouterr().out.startswith("✓ square_prototypes")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (square_always_direct, r"\(literal, N = 37, size = 5\).*pool P_fg to size prototypes p_s first"),
    (square_tiled, "repeated the whole sequence"),
    (square_direct_from_p_s, r"\(direct, N = 37, size = 5\).*straight to size\^2"),
])
def test_square_prototypes_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb06.check_square_prototypes(answer)


# --- generate_kernels -----------------------------------------------------------------------------------------------


def generate_kernels(p_s, p_s2, generators):
    b, c, size = p_s.shape
    return {"v": generators["v"](p_s).view(b, c, size, 1), "h": generators["h"](p_s).view(b, c, 1, size),
            "s": generators["s"](p_s2).view(b, c, size, size)}


def kernels_shared_generator(p_s, p_s2, generators):
    kernels = generate_kernels(p_s, p_s2, generators)
    kernels["h"] = generators["v"](p_s).view_as(kernels["h"])
    return kernels


def kernels_square_transposed(p_s, p_s2, generators):
    kernels = generate_kernels(p_s, p_s2, generators)
    kernels["s"] = kernels["s"].transpose(-1, -2)
    return kernels


def kernels_square_from_p_s(p_s, p_s2, generators):
    b, c, size = p_s.shape
    kernels = generate_kernels(p_s, p_s2, generators)
    kernels["s"] = generators["s"](p_s).view(b, c, size, size)
    return kernels


def kernels_v_lying(p_s, p_s2, generators):
    kernels = generate_kernels(p_s, p_s2, generators)
    kernels["v"] = kernels["v"].view_as(kernels["h"])
    return kernels


def test_generate_kernels_passes_the_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    nb06.check_generate_kernels(generate_kernels)
    assert capsys.readouterr().out.startswith("✓ generate_kernels")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (kernels_shared_generator, "horizontal kernel 'h': values differ.*no shared weights"),
    (kernels_square_transposed, "is transposed"),
    (kernels_square_from_p_s, "raised RuntimeError.*generators\\[\"s\"\\] reads p_s2"),
    (kernels_v_lying, r"vertical kernel 'v': shape \(2, 4, 1, 3\), expected \(2, 4, 3, 1\)"),
])
def test_generate_kernels_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb06.check_generate_kernels(answer)


# --- dynamic_depthwise_conv -----------------------------------------------------------------------------------------


def conv_square_padding(features, kernels):
    b, c, h, w = features.shape
    kh, kw = kernels.shape[-2:]
    out = F.conv2d(features.reshape(1, b * c, h, w), kernels.reshape(b * c, 1, kh, kw), padding=kh // 2,
                   groups=b * c)
    return out.view(b, c, *out.shape[-2:])


def conv_groups_c(features, kernels):
    b, c, h, w = features.shape
    kh, kw = kernels.shape[-2:]
    out = F.conv2d(features.reshape(1, b * c, h, w), kernels.reshape(b * c, 1, kh, kw), padding=(kh // 2, kw // 2),
                   groups=c)
    return out.view(b, c, h, w)


def conv_kernels_mixed_up(features, kernels):
    b, c, h, w = features.shape
    kh, kw = kernels.shape[-2:]
    mixed = kernels.transpose(0, 1).reshape(b * c, 1, kh, kw)  # channel-major: sample i, channel c gets another kernel
    out = F.conv2d(features.reshape(1, b * c, h, w), mixed, padding=(kh // 2, kw // 2), groups=b * c)
    return out.view(b, c, h, w)


@pytest.mark.parametrize("answer", [dynamic_depthwise_conv, dynamic_depthwise_conv_loop])
def test_dynamic_depthwise_conv_passes_right_answers(answer, capsys: pytest.CaptureFixture[str]) -> None:
    nb06.check_dynamic_depthwise_conv(answer)
    assert capsys.readouterr().out.startswith("✓ dynamic_depthwise_conv")


@pytest.mark.parametrize(("answer", "words"), [
    (stub, "not done yet"),
    (conv_square_padding, r"5x1 kernel: the output is \(6, 11\).*padding = \(kh // 2, kw // 2\)"),
    (conv_groups_c, "raised RuntimeError.*groups = B\\*C"),
    (conv_kernels_mixed_up, "with 5x1 kernels: values differ"),
])
def test_dynamic_depthwise_conv_names_the_mistake(answer, words: str) -> None:
    with pytest.raises(ExerciseError, match=words):
        nb06.check_dynamic_depthwise_conv(answer)
