"""Every setting of a run in one place: :class:`TrainConfig` and its training presets (:func:`resolve_config`).

The model's own settings, :class:`DPCNConfig` and its presets (``paper``, ``cpu``, ``tiny``), live in
``dpcn_lite.model_config`` and are re-exported here, so ``from dpcn_lite.config import DPCNConfig, get_preset`` works.
Training presets give each ``(preset, dataset)`` its budget and optimiser. Both sit below the model and the loop, so
that every other module can read them without importing each other.

Every value the paper leaves open is marked "assumption" and listed in ``docs/choices.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from data_utils.datasets import DATASETS
from data_utils.errors import BadArgumentError
from data_utils.synthetic.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK
from dpcn_lite.checks import check_choice, check_int, check_number
from dpcn_lite.model_config import (BACKBONES, DCM_KERNELS, EMPTY_SUPPORT_FALLBACKS, KSHOT_FUSIONS, MODEL_NAMES,
                                    PRESETS, SAM_METHODS, SQUARE_PROTOTYPE_SOURCES, DPCNConfig, check_dcm_kernels,
                                    check_test_scales, get_preset)

__all__ = ["BACKBONES", "DCM_KERNELS", "EMPTY_SUPPORT_FALLBACKS", "KSHOT_FUSIONS", "MODEL_NAMES", "OPTIMIZERS",
           "PRESETS", "SAM_METHODS", "SQUARE_PROTOTYPE_SOURCES", "TRAINING_PRESETS", "TRAINING_PRESET_NAMES",
           "DPCNConfig", "TrainConfig", "check_choice", "check_dcm_kernels", "get_preset", "resolve_config"]

OPTIMIZERS = ("sgd", "adamw")


# ======================================================================================================================
# A training run
# ======================================================================================================================


@dataclass
class TrainConfig:
    """Everything that decides a training run. Build it with :func:`resolve_config` (preset defaults + overrides)."""

    preset: str = "cpu"
    """Model preset of ``dpcn_lite.config`` (``paper``, ``cpu``, ``tiny``)."""
    dataset: str = "synthetic"
    model: str = "dpcn"
    """``dpcn``, ``prototype`` (PANet-like baseline) or ``prior`` (PFENet-like baseline)."""
    fold: int = 0
    shots: int = 1
    seed: int = 0
    epochs: int = 10
    episodes_per_epoch: int | None = 1000
    """Training episodes per epoch; ``None`` = one pass over the training pool (PFENet: every training image once)."""
    batch_size: int = 8
    """Total batch over all processes (DDP splits it; the LR is not rescaled)."""
    base_lr: float = 0.005
    lr_scale: float = 1.0
    """Multiplies ``base_lr`` for every parameter group: 10 reproduces PFENet/BAM code's ×10 on all groups."""
    head_lr_scale: float = 1.0
    """Multiplies the head's LR (every trainable parameter outside the backbone). The paper preset uses 10: the
    PFENet convention of new layers at 10× the backbone's LR (a documented choice, unverified: docs/training.md)."""
    backbone_lr_scale: float = 1.0
    """Multiplies the LR of the trainable backbone stage (ResNet layer4 when ``train_layer4``)."""
    optimizer: str = "sgd"
    """``sgd`` (the paper's family: momentum 0.9) or ``adamw`` (the cpu preset's choice for its short budget)."""
    momentum: float = 0.9
    """SGD momentum (unused by AdamW, which keeps its default betas 0.9 / 0.999)."""
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    amp: bool = True
    """Mixed precision (float16 autocast + GradScaler) when training on CUDA; ignored on the CPU."""
    feature_cache: bool = True
    """Train from cached backbone features when the backbone is fully frozen (no augmentation then)."""
    cache_dtype: str = "float16"
    """Storage type of cached features (float16 halves the memory; float32 is bit-exact)."""
    augment: bool = True
    """PFENet's augmentation when training through the backbone (the feature cache always trains without it)."""
    num_workers: int = 0
    eval_episodes: int = 1000
    eval_seeds: tuple[int, ...] = (0,)
    """Test-episode seeds; several give mean ± std."""
    eval_batch_size: int = 8
    test_scales: tuple[float, ...] = (1.0,)
    """Multi-scale testing: the query is resized by each scale and the logits are averaged (``(1.0,)`` = off)."""
    selection_episodes: int = 0
    """Held-out base-class episodes scored after every epoch to select the best epoch (0 = off). They come from the
    test split's images but target the fold's *base* classes, so no novel-class label is ever looked at. The last
    epoch's results are always reported; the best epoch's are added beside them (``best.pt``)."""
    data_root: str | None = None
    synthetic_images_per_class: int | None = None
    """Size of the synthetic benchmark (None = its default); small values make quick tests."""
    synthetic_benchmark: str = DEFAULT_BENCHMARK
    """Which synthetic benchmark (``shapes`` = v1, ``categories`` = v2); see ``data_utils.synthetic.benchmarks``."""
    train_on_novel: bool = False
    """The diagnosis's oracle: also train on the fold's novel classes, with their own labels, on the training images
    where they appear. An upper bound for the same head and features, never a few-shot result."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """DPCNConfig fields changed from the preset (e.g. ``{"use_sam": False}`` for an ablation)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every setting before any work or file is written; ``BadArgumentError`` (a ``ValueError``) names it.

        Learning rates must be finite and positive (``--lr nan`` would train to NaN weights), seeds must be what NumPy
        accepts (0 to 2**32 - 1), and sizes have generous upper bounds (a record from a foreign checkpoint is refused
        here, not after allocating memory)."""
        if isinstance(self.eval_seeds, (str, bytes)) or not isinstance(self.eval_seeds, (list, tuple)) \
                or not 1 <= len(self.eval_seeds) <= 100:
            raise BadArgumentError(f"eval_seeds={self.eval_seeds!r} must be a list of 1 to 100 seeds.")
        self.eval_seeds = tuple(check_int("eval seed", s, 0, 2**32 - 1) for s in self.eval_seeds)
        self.test_scales = check_test_scales(self.test_scales, "test_scales")
        check_choice("TrainConfig.preset", self.preset, tuple(PRESETS))
        check_choice("TrainConfig.model", self.model, MODEL_NAMES)
        check_choice("TrainConfig.dataset", self.dataset, DATASETS)
        check_choice("TrainConfig.synthetic_benchmark", self.synthetic_benchmark, tuple(BENCHMARKS))
        check_choice("TrainConfig.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("TrainConfig.cache_dtype", self.cache_dtype, ("float16", "float32"))
        if isinstance(self.shots, int) and not isinstance(self.shots, bool) and self.shots < 1:
            raise BadArgumentError(f"shots={self.shots}: an episode needs at least one support image (k >= 1).")
        for name, low, high in (("shots", 1, 100), ("fold", 0, 3), ("seed", 0, 2**32 - 1), ("epochs", 1, 100_000),
                                ("batch_size", 1, 4096), ("eval_episodes", 1, 1_000_000), ("eval_batch_size", 1, 4096),
                                ("selection_episodes", 0, 100_000),
                                ("num_workers", 0, 256)):
            check_int(name, getattr(self, name), low, high)
        if self.episodes_per_epoch is not None:
            check_int("episodes_per_epoch", self.episodes_per_epoch, 1, 100_000_000)
            if self.episodes_per_epoch < self.batch_size:
                raise BadArgumentError(f"episodes_per_epoch={self.episodes_per_epoch} is smaller than one batch "
                                       f"({self.batch_size}).")
        if self.synthetic_images_per_class is not None:
            check_int("synthetic_images_per_class", self.synthetic_images_per_class, 1, 100_000)
        check_number("base_lr (--lr)", self.base_lr, 0.0, 100.0, low_open=True)
        for name in ("lr_scale", "head_lr_scale", "backbone_lr_scale"):
            check_number(name, getattr(self, name), 0.0, 1000.0, low_open=True)
        check_number("momentum", self.momentum, 0.0, 0.999)
        check_number("weight_decay", self.weight_decay, 0.0, 1.0)
        check_number("poly_power", self.poly_power, 0.0, 10.0, low_open=True)
        for name in ("amp", "feature_cache", "augment", "train_on_novel"):
            if not isinstance(getattr(self, name), bool):
                raise BadArgumentError(f"{name}={getattr(self, name)!r} must be true or false.")
        if self.data_root is not None and not isinstance(self.data_root, str):
            self.data_root = str(self.data_root)
        if not isinstance(self.model_overrides, dict):
            raise BadArgumentError(f"model_overrides={self.model_overrides!r} must be a dict of DPCNConfig fields.")
        self.model_config()  # the model settings are checked now too, before anything is built

    @property
    def learning_rate(self) -> float:
        """The head's starting LR: ``base_lr · lr_scale · head_lr_scale`` (the LR of the parameters every model has)."""
        return self.base_lr * self.lr_scale * self.head_lr_scale

    @property
    def group_learning_rates(self) -> dict[str, float]:
        """Starting LR of each parameter group: ``head`` and ``backbone`` (the latter used only when it trains)."""
        return {"head": self.learning_rate, "backbone": self.base_lr * self.lr_scale * self.backbone_lr_scale}

    def model_config(self) -> DPCNConfig:
        """The resolved DPCNConfig: preset, dataset-specific switches (COCO: frozen backbone, plain prior), overrides."""
        dataset_switches: dict[str, Any] = {}
        if self.preset == "paper" and self.dataset == "coco":
            dataset_switches = {"train_layer4": False, "sam_windows": ((1, 1),)}  # paper §4: COCO setting
        return get_preset(self.preset, **{**dataset_switches, **self.model_overrides})

    def resolved_dict(self) -> dict[str, Any]:
        """What a run folder's ``config.json`` holds: the training settings, the effective LR and the model config."""
        return {"train": self.to_dict(), "effective_lr": self.learning_rate,
                "effective_lr_per_group": self.group_learning_rates, "model": self.model_config().to_dict()}

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["eval_seeds"] = list(self.eval_seeds)
        values["test_scales"] = list(self.test_scales)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BadArgumentError(f"Unknown TrainConfig field(s) {unknown}; valid fields are {sorted(known)}.")
        # Records written before the benchmark had versions were all made on the first one.
        return cls(**{"synthetic_benchmark": "shapes", **values})


TRAINING_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # The paper (notes §2): PASCAL-5i LR 0.005, batch 8, 200 epochs; COCO-20i LR 0.002, batch 32, 50 epochs.
    # One epoch = one pass over the training pool, as in PFENet. The paper's LR is read as the backbone's, with the
    # new layers at 10x (PFENet convention; a choice, unverified until a PASCAL run confirms it: docs/training.md).
    **{("paper", data): dict(epochs=epochs, batch_size=batch, base_lr=lr, episodes_per_epoch=None, feature_cache=False,
                             head_lr_scale=10.0, selection_episodes=300)
       for data, epochs, batch, lr in (("pascal", 200, 8, 0.005), ("coco", 50, 32, 0.002), ("synthetic", 200, 8, 0.005))},
    # The CPU preset: frozen Lite0 backbone, features cached once, the narrow head trained for a few minutes on 2
    # cores with AdamW (a choice, docs/training.md): in 1,200 steps SGD at the paper's 0.005 never left the
    # all-background regime on the synthetic benchmark, and PFENet's hidden x10 (0.05) kills the support pathways.
    # 1,500 steps: on the categories benchmark every query enters the reverse pass, and 3,000 steps took 13.5 min.
    **{("cpu", data): dict(epochs=epochs, batch_size=8, optimizer="adamw", base_lr=0.001, episodes_per_epoch=episodes)
       for data, epochs, episodes in (("synthetic", 20, 600), ("pascal", 12, 2000), ("coco", 12, 4000))},
    # Tests: a few steps.
    ("tiny", "synthetic"): dict(epochs=1, batch_size=2, base_lr=0.01, episodes_per_epoch=4, eval_episodes=8,
                                eval_batch_size=4),
}
TRAINING_PRESET_NAMES: tuple[str, ...] = tuple(sorted({p for p, _ in TRAINING_PRESETS}))
"""Presets that have training settings (the command line's ``--preset`` choices)."""


def resolve_config(preset: str = "cpu", dataset: str = "synthetic", **overrides: Any) -> TrainConfig:
    """Preset defaults for ``(preset, dataset)`` with ``overrides`` on top: ``resolve_config("cpu", epochs=2)``."""
    defaults = TRAINING_PRESETS.get((preset, dataset), TRAINING_PRESETS.get((preset, "synthetic")))
    if defaults is None:
        raise BadArgumentError(f"No training settings for preset={preset!r}; presets: {list(TRAINING_PRESET_NAMES)}.")
    overrides = {k: v for k, v in overrides.items() if v is not None or k == "episodes_per_epoch"}
    return TrainConfig(preset=preset, dataset=dataset, **{**defaults, **overrides})
