"""The synthetic benchmarks by name: what a class is, and which classes exist beyond the 20 named ones.

* ``shapes`` (version 1): a class is its silhouette alone; every object and background draws colour and texture from
  one shared pool. Frozen ImageNet features cannot match silhouettes across textures (raw-feature AUC 0.63 on novel
  classes), so every trained head memorises the 15 base classes. Kept as a lesson on texture bias.
* ``categories`` (version 2, the default): a class behaves like an object category. It has an appearance of its own
  (a hue with jitter, a second darker colour, one texture kind with random period and angle; the 20 named classes
  share 7 hues, so no colour alone names a class) *and* a silhouette that decides the exact mask, and the training
  split adds ``generated_classes`` procedural classes whose silhouettes and appearances differ from every named
  class. Meta-learning generalises with the number of training classes: with the
  15 named base classes alone a trained prototype head scores 23.5 mIoU on novel classes, with 300 generated ones
  50.9 (``docs/diagnosis.md``). Backgrounds are desaturated 40 % toward grey, so objects stand out without any colour
  naming a class.

The class definitions are fixed (drawn from a constant seed), so a class means the same thing for every image seed.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from ..folds import SYNTHETIC_CLASSES
from .shapes import SHAPES, GeneratedShape, ShapeFn
from .textures import TEXTURES, Texture

CLASS_DEFINITION_SEED = 20221  # fixed: generated classes must not change with the images' seed


@dataclass(frozen=True)
class ClassStyle:
    """A class's appearance: its hue (0-1), the hue of its second colour, and its texture kind."""

    hue: float
    texture: str


@dataclass(frozen=True)
class SyntheticBenchmark:
    """Everything that defines one version of the synthetic benchmark (see the module docstring)."""

    name: str
    version: int
    class_appearance: bool
    """Objects take colour and texture from their class (True) or from the pool shared by all classes (False)."""
    generated_classes: int = 0
    """Procedural training classes added to the 15 named base classes of every fold (ids 21, 22, ...)."""
    images_per_generated_class: int = 0
    background_desaturation: float = 0.0
    hue_jitter: float = 0.02
    named_hue_groups: int = 0
    """0: every named class has a hue of its own (golden-ratio spacing). k > 0: class c takes hue (c mod k) / k, so
    each hue is shared by several classes and only hue and texture together name a class."""

    @property
    def tag(self) -> str:
        """``name-vN``: what metrics, checkpoint records and feature caches record."""
        return f"{self.name}-v{self.version}"

    @property
    def num_classes(self) -> int:
        return len(SYNTHETIC_CLASSES) + self.generated_classes

    @cached_property
    def named_styles(self) -> tuple[ClassStyle, ...]:
        """Class ``c`` (1-based): hue ``c * 0.618 mod 1`` (golden-ratio spacing) or ``(c mod k) / k`` with
        ``named_hue_groups = k``; texture kind ``c mod 6``."""
        k = self.named_hue_groups
        return tuple(ClassStyle(hue=(c % k) / k if k else (c * 0.618) % 1.0, texture=TEXTURES[c % len(TEXTURES)])
                     for c in range(1, len(SYNTHETIC_CLASSES) + 1))

    @cached_property
    def generated(self) -> tuple[tuple[GeneratedShape, ClassStyle], ...]:
        """The generated classes' (shape, style), none too close to a named class in shape or in appearance."""
        rng = np.random.default_rng([CLASS_DEFINITION_SEED, self.generated_classes])
        classes = []
        while len(classes) < self.generated_classes:
            shape = GeneratedShape.draw(rng)
            style = ClassStyle(hue=float(rng.uniform()), texture=TEXTURES[int(rng.integers(len(TEXTURES)))])
            if not resembles_named_shape(shape) and not resembles_named_style(style, self.named_styles):
                classes.append((shape, style))
        return tuple(classes)

    def shape(self, class_id: int) -> ShapeFn:
        if class_id <= len(SYNTHETIC_CLASSES):
            return SHAPES[SYNTHETIC_CLASSES[class_id - 1]]
        return self.generated[class_id - len(SYNTHETIC_CLASSES) - 1][0]

    def style(self, class_id: int) -> ClassStyle:
        if class_id <= len(SYNTHETIC_CLASSES):
            return self.named_styles[class_id - 1]
        return self.generated[class_id - len(SYNTHETIC_CLASSES) - 1][1]

    def class_texture(self, rng: np.random.Generator, class_id: int, size: int) -> Texture:
        """An instance of the class's appearance: jittered hue, random saturation, brightness, period and angle."""
        style = self.style(class_id)
        jitter = self.hue_jitter
        saturation, value = rng.uniform(0.55, 0.9), rng.uniform(0.55, 0.95)
        color_a = _hsv_to_rgb(style.hue + rng.uniform(-jitter, jitter), saturation, value)
        color_b = _hsv_to_rgb(style.hue + rng.uniform(-jitter, jitter), 0.6 * saturation, 0.6 * value)
        return Texture(kind=style.texture, color_a=color_a, color_b=color_b,
                       period=max(float(rng.uniform(0.035, 0.08) * size), 3.0), angle=float(rng.uniform(0, np.pi)),
                       noise_seed=int(rng.integers(2**31)))

    def desaturate(self, texture: Texture) -> Texture:
        """Move a (background) texture's colours toward their grey by ``background_desaturation``."""
        def grey(colour: tuple[float, float, float]) -> tuple[float, float, float]:
            c = np.asarray(colour)
            return tuple(float(x) for x in (1 - self.background_desaturation) * c + self.background_desaturation * c.mean())
        return Texture(texture.kind, grey(texture.color_a), grey(texture.color_b), texture.period, texture.angle,
                       texture.noise_seed)


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> tuple[float, float, float]:
    return tuple(255.0 * c for c in colorsys.hsv_to_rgb(hue % 1.0, saturation, value))


_PROBE_U, _PROBE_V = np.meshgrid(np.linspace(-1, 1, 40, dtype=np.float32), np.linspace(-1, 1, 40, dtype=np.float32))


@lru_cache(maxsize=1)
def _named_masks() -> np.ndarray:
    """Every named silhouette at 16 rotations on a 40 x 40 probe grid, flattened: (16 * 20) x 1600 booleans."""
    masks = []
    for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
        c, s = np.cos(angle), np.sin(angle)
        u = c * _PROBE_U + s * _PROBE_V
        v = -s * _PROBE_U + c * _PROBE_V
        masks.extend(named(u, v).ravel() for named in SHAPES.values())
    return np.stack(masks)


def resembles_named_shape(shape: ShapeFn, max_iou: float = 0.8) -> bool:
    """True when ``shape`` overlaps a named silhouette by IoU > ``max_iou`` at any of 16 rotations."""
    mask = shape(_PROBE_U, _PROBE_V).ravel()
    named = _named_masks()
    intersection = np.count_nonzero(named & mask, axis=1)
    union = np.count_nonzero(named | mask, axis=1)
    return bool((intersection > max_iou * np.maximum(union, 1)).any())


def resembles_named_style(style: ClassStyle, named: tuple[ClassStyle, ...], min_hue_gap: float = 0.04) -> bool:
    """True when a named class has the same texture kind and a hue closer than ``min_hue_gap`` (on the hue circle)."""
    for other in named:
        gap = abs(style.hue - other.hue) % 1.0
        if other.texture == style.texture and min(gap, 1.0 - gap) < min_hue_gap:
            return True
    return False


BENCHMARKS: dict[str, SyntheticBenchmark] = {
    "shapes": SyntheticBenchmark(name="shapes", version=1, class_appearance=False),
    "categories": SyntheticBenchmark(name="categories", version=2, class_appearance=True, generated_classes=200,
                                     images_per_generated_class=10, background_desaturation=0.4, named_hue_groups=7),
}
DEFAULT_BENCHMARK = "categories"


def get_benchmark(name: str | SyntheticBenchmark) -> SyntheticBenchmark:
    """A benchmark by name (``shapes``, ``categories``) or one given as is."""
    if isinstance(name, SyntheticBenchmark):
        return name
    if name not in BENCHMARKS:
        raise ValueError(f"unknown synthetic benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]
