"""The model's settings: :class:`DPCNConfig` (every switch of DPCN and its baselines) and its presets.

* ``paper``: the CVPR 2022 setting (ResNet-50 dilated to stride 8, 473 px, C=256, S=5, layer4 trainable, the support
  masked before layer4 as PFENet does).
* ``cpu``: a pretrained EfficientNet-Lite0 that installs from the package registry, 160 px, a narrow head and a frozen
  backbone (so features can be cached): trains on a laptop CPU.
* ``tiny``: a small random-initialised backbone at 64 px for tests (forward + backward well under a second).

Every value the paper leaves open is marked "assumption" here and listed in ``docs/choices.md``. A run's settings
(:class:`~dpcn_lite.config.TrainConfig`) live in ``dpcn_lite.config``, which re-exports everything here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from data_utils.errors import BadArgumentError
from data_utils.validation import IGNORE_INDEX
from dpcn_lite.checks import check_choice, check_int, check_number

BACKBONES = ("resnet18", "resnet50", "resnet101", "resnet50_deep", "efficientnet_lite0", "tiny_cnn")
WEIGHTS_FILE_BACKBONES = ("resnet50_deep",)
"""Backbones whose ImageNet weights are a file the user downloads (``DPCNConfig.backbone_weights``)."""
MAX_TEST_SCALE = 4.0
"""Largest query scale of multi-scale testing (a 473 px query at 4x is 1892 px: already a lot of memory)."""
KSHOT_FUSIONS = ("pool", "mask_avg", "vote", "or")
DCM_KERNELS = ("v", "h", "s")
SQUARE_PROTOTYPE_SOURCES = ("literal", "direct")
SAM_METHODS = ("shifted", "unfold", "loop")
EMPTY_SUPPORT_FALLBACKS = ("map", "mean")
MODEL_NAMES = ("dpcn", "prototype", "prior")
"""The heads ``dpcn_lite.model.build_model`` builds: DPCN and its two baselines."""


def check_dcm_kernels(name: str, kernels: tuple[str, ...]) -> None:
    """DCM kernel names must be distinct names from ``DCM_KERNELS`` (used by the config and by the module)."""
    if any(k not in DCM_KERNELS for k in kernels) or len(set(kernels)) != len(kernels):
        raise BadArgumentError(f"{name}={tuple(kernels)!r}: use a subset of distinct names from {list(DCM_KERNELS)} "
                               "(v = S x 1, h = 1 x S, s = S x S).")


@dataclass
class DPCNConfig:
    """Every switch of the model. Build one through :func:`get_preset` rather than by hand."""

    # --- backbone -----------------------------------------------------------------------------------------------
    backbone: str = "resnet50"
    """One of ``BACKBONES``. ResNets and Lite0 are dilated to output stride 8; ``tiny_cnn`` is for tests.
    ``resnet50_deep`` is PFENet's deep-stem ResNet-50 ("resnet50_v2"), the network DPCN's numbers come from."""
    pretrained: bool = True
    """ImageNet weights (torchvision ResNets download them: needs a network; Lite0 ships them inside an installed
    package; ``resnet50_deep`` reads them from ``backbone_weights``)."""
    backbone_weights: str | None = None
    """Path of the ImageNet weights file of ``resnet50_deep`` (PFENet's ``initmodel/resnet50_v2.pth``, downloaded by
    the user; PFENet's key names). Required when that backbone is pretrained; refused for the other backbones."""
    mask_support_high: bool = False
    """Mask the support before the high stage: x_s^h = layer4(layer3(support) * M_s), so layer4 sees only the object
    (PFENet's code; the DPCN paper does not say). The query's layer4 stays unmasked. On in the ``paper`` preset."""
    train_layer4: bool = True
    """Fine-tune the stage that makes the high-level features (ResNet layer4; Lite0 blocks 5-6). The paper does this
    on PASCAL-5i and freezes everything on COCO-20i. All other backbone parameters are always frozen."""
    image_size: int = 473
    """Square training/test input size the preset is meant for (the model itself accepts any size >= 8)."""

    # --- head width and feature reduction -------------------------------------------------------------------------
    channels: int = 256
    """C: width of the reduced mid-level features and of the whole head (assumption: the paper writes only C)."""
    reduction_dropout: float = 0.5
    """Dropout2d after the 1x1 reductions (PFENet code)."""
    classifier_dropout: float = 0.1
    """Dropout2d inside the classifier (PFENet/BAM code)."""

    # --- modules and ablation switches ------------------------------------------------------------------------------
    use_sam: bool = True
    """SAM on. Off: the plain PFENet cosine prior (a 1x1 window) feeds FFM and no activation maps are fused."""
    use_ffm: bool = True
    """FFM on. Off: the query features pass unfiltered and no refined mask is fused."""
    use_dcm: bool = True
    """DCM on. Off: the (filtered) query features are fused once instead of the dynamic-conv responses."""
    sam_windows: tuple[tuple[int, int], ...] = ((5, 1), (3, 3), (1, 5))
    """SAM windows (dh, dw), odd sizes. ``((1, 1),)`` is the paper's COCO setting (plain prior only)."""
    sam_method: str = "shifted"
    """How SAM is computed, all exact: ``shifted`` (one cosine matrix + shifted sums, fastest), ``unfold``, ``loop``."""
    kernel_size: int = 5
    """S: DCM kernels are S x 1, 1 x S and S x S (paper: 5; Table 4 ablates 3, 5, 7, 9)."""
    dcm_kernels: tuple[str, ...] = DCM_KERNELS
    """Subset of {"v" (S x 1), "h" (1 x S), "s" (S x S)} (paper Table 5)."""
    square_prototypes: str = "literal"
    """Where the S^2 prototypes come from: ``literal`` = pool_{S^2}(p_s) as Eq. 6 reads;
    ``direct`` = pool_{S^2}(P_fg)."""
    ffm_kernel_size: int = 3
    """Kernel of FFM's C -> 1 conv (assumption: 3 x 3)."""
    foreground_threshold: float = 0.5
    """Soft support mask > threshold selects DCM's foreground vectors (assumption)."""
    empty_support_fallback: str = "map"
    """When no support pixel passes the threshold: ``map`` = the soft masked-average prototype; ``mean`` = the mean of
    all support vectors (assumption)."""
    aspp_dilations: tuple[int, ...] = (6, 12, 18)
    """ASPP dilation rates (BAM's head: 6/12/18 at 60 x 60); presets with small feature maps scale them down."""
    kshot_fusion: str = "pool"
    """k-shot strategy: ``pool`` (paper: foreground vectors of all shots pooled, SAM maps and prototypes averaged),
    ``mask_avg`` (average of per-shot foreground probabilities), ``vote`` (HSNet voting), ``or`` (union)."""

    # --- losses -------------------------------------------------------------------------------------------------
    reverse_loss_weight: float = 1.0
    """lambda of the PANet-style query->support loss (paper: 1.0). 0 disables it."""
    ignore_index: int = IGNORE_INDEX

    # --- numerics -----------------------------------------------------------------------------------------------
    map_eps: float = 5e-4
    """Masked average pooling: sum(x m) / (sum(m) + eps) (PFENet code)."""
    cosine_eps: float = 1e-7
    """Per-pixel L2 normalisation and min-max normalisation eps (PFENet code)."""

    def __post_init__(self) -> None:
        try:
            self.sam_windows = tuple(tuple(w) for w in self.sam_windows)  # type: ignore[assignment]
            self.dcm_kernels = tuple(self.dcm_kernels)
            self.aspp_dilations = tuple(self.aspp_dilations)
        except TypeError as error:
            raise BadArgumentError(f"DPCNConfig: sam_windows, dcm_kernels and aspp_dilations must be lists ({error}).")
        self.validate()

    def validate(self) -> None:
        """Raise ``BadArgumentError`` (a ``ValueError``) naming the bad field and the valid values.

        Sizes have upper bounds far above any preset (C <= 4096, S <= 15, 2048 px, ...), so that a config read from a
        foreign checkpoint is refused before the model is built, not after it has allocated gigabytes."""
        for name, valid in (("backbone", BACKBONES), ("kshot_fusion", KSHOT_FUSIONS),
                            ("square_prototypes", SQUARE_PROTOTYPE_SOURCES), ("sam_method", SAM_METHODS),
                            ("empty_support_fallback", EMPTY_SUPPORT_FALLBACKS)):
            check_choice(f"DPCNConfig.{name}", getattr(self, name), valid)
        for name in ("pretrained", "train_layer4", "mask_support_high", "use_sam", "use_ffm", "use_dcm"):
            if not isinstance(getattr(self, name), bool):
                raise BadArgumentError(f"DPCNConfig.{name}={getattr(self, name)!r} must be true or false.")
        self._check_backbone_weights()
        check_dcm_kernels("DPCNConfig.dcm_kernels", self.dcm_kernels)
        if self.use_dcm and not self.dcm_kernels:
            raise BadArgumentError("DPCNConfig.dcm_kernels is empty while use_dcm=True; set use_dcm=False to drop DCM.")
        for name, high in (("kernel_size", 15), ("ffm_kernel_size", 15)):
            if check_int(f"DPCNConfig.{name}", getattr(self, name), 1, high) % 2 == 0:
                raise BadArgumentError(f"DPCNConfig.{name}={getattr(self, name)} must be a positive odd number "
                                       "(paper: 5 for kernel_size).")
        if self.use_sam and not self.sam_windows:
            raise BadArgumentError("DPCNConfig.sam_windows is empty while use_sam=True; set use_sam=False to drop SAM.")
        if len(self.sam_windows) > 8:
            raise BadArgumentError(f"DPCNConfig.sam_windows has {len(self.sam_windows)} windows; at most 8.")
        for w in self.sam_windows:
            if len(w) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 15 or v % 2 == 0
                                  for v in w):
                raise BadArgumentError(f"DPCNConfig.sam_windows: {w!r} must be (height, width) with odd sizes 1-15.")
        check_int("DPCNConfig.channels", self.channels, 1, 4096)
        check_int("DPCNConfig.image_size", self.image_size, 8, 2048)
        if not self.aspp_dilations or len(self.aspp_dilations) > 8:
            raise BadArgumentError(f"DPCNConfig.aspp_dilations={self.aspp_dilations!r}: give 1 to 8 rates.")
        for rate in self.aspp_dilations:
            check_int("DPCNConfig.aspp_dilations[...]", rate, 1, 64)
        for name in ("reduction_dropout", "classifier_dropout"):
            check_number(f"DPCNConfig.{name}", getattr(self, name), 0.0, 0.99)
        check_number("DPCNConfig.foreground_threshold", self.foreground_threshold, 0.0, 0.999)
        check_number("DPCNConfig.reverse_loss_weight", self.reverse_loss_weight, 0.0, 100.0)
        check_number("DPCNConfig.map_eps", self.map_eps, 0.0, 1.0, low_open=True)
        check_number("DPCNConfig.cosine_eps", self.cosine_eps, 0.0, 1.0, low_open=True)
        check_int("DPCNConfig.ignore_index", self.ignore_index, 0, 255)

    def _check_backbone_weights(self) -> None:
        """A weights path belongs to a backbone that reads one, and such a backbone needs one to be pretrained.

        Whether the file exists is checked when the backbone is built: a config read from a checkpoint made on another
        machine must still load."""
        weights = self.backbone_weights
        if weights is not None and (not isinstance(weights, str) or not 0 < len(weights) <= 4096):
            raise BadArgumentError(f"DPCNConfig.backbone_weights={weights!r} must be a file path or None.")
        if weights is not None and self.backbone not in WEIGHTS_FILE_BACKBONES:
            raise BadArgumentError(f"DPCNConfig.backbone_weights is read only by {list(WEIGHTS_FILE_BACKBONES)}, "
                                   f"not by backbone={self.backbone!r}; drop it or change the backbone.")
        if weights is None and self.pretrained and self.backbone in WEIGHTS_FILE_BACKBONES:
            raise BadArgumentError(
                f"DPCNConfig.backbone={self.backbone!r} with pretrained=True needs backbone_weights: the path of "
                "PFENet's ImageNet file resnet50_v2.pth, which you download yourself (or set pretrained=False).")

    @property
    def num_sam_maps(self) -> int:
        """Activation maps SAM adds to the fusion (0 when SAM is off)."""
        return len(self.sam_windows) if self.use_sam else 0

    @property
    def fusion_channels(self) -> int:
        """Channels of x_out: 4C + 4 in the paper; see ``docs/model.md`` for each switch."""
        query_branches = len(self.dcm_kernels) if self.use_dcm else 1
        return self.channels * (query_branches + 1) + self.num_sam_maps + (1 if self.use_ffm else 0)

    def replace(self, **overrides: Any) -> "DPCNConfig":
        """A copy with some fields changed (validated; unknown names raise)."""
        _check_fields(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples become lists) for checkpoints and JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DPCNConfig":
        _check_fields(values)
        return cls(**values)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        backbone="resnet50", pretrained=True, train_layer4=True, image_size=473, channels=256, kernel_size=5,
        sam_windows=((5, 1), (3, 3), (1, 5)), aspp_dilations=(6, 12, 18), mask_support_high=True,
    ),
    "cpu": dict(
        backbone="efficientnet_lite0", pretrained=True, train_layer4=False, image_size=160, channels=64,
        kernel_size=5, sam_windows=((5, 1), (3, 3), (1, 5)), aspp_dilations=(2, 4, 6), reduction_dropout=0.1,
    ),
    "tiny": dict(
        backbone="tiny_cnn", pretrained=False, train_layer4=True, image_size=64, channels=16, kernel_size=3,
        sam_windows=((5, 1), (3, 3), (1, 5)), aspp_dilations=(1, 2, 3), reduction_dropout=0.1,
    ),
}
"""Preset name -> field values. ``paper`` follows the paper's PASCAL-5i setting; for COCO-20i use
``get_preset("paper", train_layer4=False, sam_windows=((1, 1),))``; for PFENet's own ResNet-50 add
``backbone="resnet50_deep", backbone_weights="initmodel/resnet50_v2.pth"``."""


def _check_fields(values: dict[str, Any]) -> None:
    valid = [f.name for f in dataclasses.fields(DPCNConfig)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise BadArgumentError(f"Unknown DPCNConfig field(s) {unknown}; valid fields are {valid}.")


def get_preset(name: str, **overrides: Any) -> DPCNConfig:
    """The named preset (``paper``, ``cpu``, ``tiny``) with optional field overrides.

    >>> get_preset("tiny", use_dcm=False).use_dcm
    False
    """
    if name not in PRESETS:
        raise BadArgumentError(f"Unknown preset {name!r}; valid presets are {sorted(PRESETS)}.")
    _check_fields(overrides)
    return DPCNConfig(**{**PRESETS[name], **overrides})


def check_test_scales(scales: Any, name: str = "scales") -> tuple[float, ...]:
    """Multi-scale testing's query scales as a tuple: 1 to 8 finite numbers in (0, 4]; ``(1.0,)`` is plain testing.

    Lives here, below both the evaluation and the run settings, so that each can check them without an import cycle."""
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__len__") or not 1 <= len(scales) <= 8:
        raise BadArgumentError(f"{name}={scales!r}: give 1 to 8 query scales, e.g. (1.0,) or (0.75, 1.0, 1.25).")
    return tuple(check_number(f"{name}[...]", s, 0.0, MAX_TEST_SCALE, low_open=True) for s in scales)
