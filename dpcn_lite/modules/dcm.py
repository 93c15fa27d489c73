"""Dynamic Convolution Module (DCM, paper §3.5, Fig. 4): kernels made from the support foreground.

1. F_e: the foreground vectors P_fg (N_fg x C): support features where the soft mask > 0.5, in raster order; with
   K shots, the vectors of all shots are concatenated (the paper's k-shot strategy).
2. Adaptive average pooling of the sequence: p_s (S prototypes) and p_{S^2} (S^2 prototypes). Read literally
   (Eq. 6, Fig. 4) p_{S^2} = pool_{S^2}(p_s), which repeats each of the S prototypes S times; ``direct`` pools P_fg.
3. Three generators without shared weights, Conv1d(C,C,1) -> ReLU -> Conv1d(C,C,1), turn the prototype sequences
   into a vertical S x 1, a horizontal 1 x S and a square S x S kernel per channel.
4. Each kernel is a per-sample depthwise convolution over the filtered query x~_q ("same" zero padding). All
   samples run at once as ONE grouped convolution with groups = B*C.

Edge case: when no support pixel passes the threshold (N_fg = 0: the object vanished at feature resolution, or the
mask is empty), the sequence is the single fallback vector (the soft-MAP prototype, or the mean support vector);
pooling a sequence shorter than S repeats its vectors.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dpcn_lite.checks import check_choice
from dpcn_lite.model_config import DCM_KERNELS, EMPTY_SUPPORT_FALLBACKS, SQUARE_PROTOTYPE_SOURCES, check_dcm_kernels


def foreground_vectors(support: torch.Tensor, soft_masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """P_fg of one sample: ``support`` KxCxhxw, ``soft_masks`` Kx1xhxw -> N_fg x C (shot by shot, raster order)."""
    selected = soft_masks[:, 0] > threshold  # K x h x w
    return support.permute(0, 2, 3, 1)[selected]


def pool_sequence(vectors: torch.Tensor, length: int) -> torch.Tensor:
    """Adaptive average pooling of an ``N x C`` sequence to ``C x length`` (N < length repeats vectors)."""
    return F.adaptive_avg_pool1d(vectors.t()[None], length)[0]


class KernelGenerator(nn.Sequential):
    """Two 1-D convolutions over the prototype sequence: Conv1d(C,C,1) -> ReLU -> Conv1d(C,C,1)."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.Conv1d(channels, channels, 1), nn.ReLU(inplace=True), nn.Conv1d(channels, channels, 1))


def dynamic_depthwise_conv(features: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each sample's channels with that sample's own kernels, as one grouped convolution.

    ``features`` BxCxHxW, ``kernels`` BxCxkhxkw (odd sizes) -> BxCxHxW with "same" zero padding.
    """
    b, c, h, w = features.shape
    kh, kw = kernels.shape[-2:]
    out = F.conv2d(features.reshape(1, b * c, h, w), kernels.reshape(b * c, 1, kh, kw),
                   padding=(kh // 2, kw // 2), groups=b * c)
    return out.view(b, c, h, w)


def dynamic_depthwise_conv_loop(features: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Reference for :func:`dynamic_depthwise_conv`: one depthwise convolution per sample."""
    c = features.shape[1]
    kh, kw = kernels.shape[-2:]
    return torch.cat([
        F.conv2d(features[i : i + 1], kernels[i][:, None], padding=(kh // 2, kw // 2), groups=c)
        for i in range(features.shape[0])
    ])


class DynamicConvolutionModule(nn.Module):
    """Generates the dynamic kernels from support foreground vectors and applies them to the filtered query."""

    def __init__(self, channels: int, kernel_size: int = 5, kernels: tuple[str, ...] = DCM_KERNELS,
                 square_prototypes: str = "literal", threshold: float = 0.5, fallback: str = "map") -> None:
        super().__init__()
        check_dcm_kernels("DynamicConvolutionModule kernels", kernels)
        if not kernels:
            raise ValueError("DynamicConvolutionModule needs at least one kernel shape (v, h or s).")
        check_choice("DynamicConvolutionModule square_prototypes", square_prototypes, SQUARE_PROTOTYPE_SOURCES)
        check_choice("DynamicConvolutionModule fallback", fallback, EMPTY_SUPPORT_FALLBACKS)
        self.kernel_size = kernel_size
        self.kernel_names = tuple(kernels)
        self.square_prototypes = square_prototypes
        self.threshold = threshold
        self.fallback = fallback
        # Unshared generators, one per kernel shape (paper: F1, F2, F3).
        self.generators = nn.ModuleDict({name: KernelGenerator(channels) for name in self.kernel_names})

    def prototypes(
        self, support: torch.Tensor, soft_masks: torch.Tensor, map_prototype: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """p_s (BxCxS), p_{S^2} (BxCxS^2) and N_fg (B,) from ``support`` BxKxCxhxw and ``soft_masks`` BxKx1xhxw.

        ``map_prototype`` (BxC) is the fallback vector when a sample has no foreground vector.
        """
        size = self.kernel_size
        short, square, counts = [], [], []
        for i in range(support.shape[0]):  # N_fg differs per sample, so the sequences are built one by one
            vectors = foreground_vectors(support[i], soft_masks[i], self.threshold)
            counts.append(vectors.shape[0])
            if vectors.shape[0] == 0:
                if self.fallback == "map":
                    vectors = map_prototype[i][None]
                else:
                    vectors = support[i].mean(dim=(0, 2, 3))[None]
            p_s = pool_sequence(vectors, size)
            short.append(p_s)
            if self.square_prototypes == "literal":
                square.append(pool_sequence(p_s.t(), size * size))
            else:
                square.append(pool_sequence(vectors, size * size))
        counts_tensor = torch.tensor(counts, device=support.device)
        return torch.stack(short), torch.stack(square), counts_tensor

    def kernels(self, p_s: torch.Tensor, p_s2: torch.Tensor) -> dict[str, torch.Tensor]:
        """Generated kernels by name: "v" BxCxSx1, "h" BxCx1xS, "s" BxCxSxS (the S^2 sequence read row-major)."""
        b, c, size = p_s.shape
        out = {}
        for name in self.kernel_names:
            if name == "v":
                out[name] = self.generators[name](p_s).view(b, c, size, 1)
            elif name == "h":
                out[name] = self.generators[name](p_s).view(b, c, 1, size)
            else:
                out[name] = self.generators[name](p_s2).view(b, c, size, size)
        return out

    def forward(
        self,
        query: torch.Tensor,
        support: torch.Tensor,
        soft_masks: torch.Tensor,
        map_prototype: torch.Tensor,
        intermediates: dict[str, torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """``query`` x~_q BxCxhxw, ``support`` x_s BxKxCxhxw, ``soft_masks`` BxKx1xhxw, ``map_prototype`` BxC.

        Returns the responses x~_q^{v,h,s} (each BxCxhxw) in the order of ``kernel_names``.
        """
        p_s, p_s2, counts = self.prototypes(support, soft_masks, map_prototype)
        kernels = self.kernels(p_s, p_s2)
        responses = [dynamic_depthwise_conv(query, kernels[name]) for name in self.kernel_names]
        if intermediates is not None:
            intermediates["num_foreground"] = counts
            intermediates["prototypes_s"] = p_s
            intermediates["prototypes_s2"] = p_s2
            for name, response in zip(self.kernel_names, responses):
                intermediates[f"kernel_{name}"] = kernels[name]
                intermediates[f"response_{name}"] = response
        return responses

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, kernels={self.kernel_names}, "
                f"square_prototypes={self.square_prototypes!r}, fallback={self.fallback!r}")
