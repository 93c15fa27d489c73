"""The embedded synthetic few-shot benchmark: 20 named classes in 4 folds of 5, no download, fully deterministic.

Why it looks the way it does
----------------------------
DPCN's claim is that plain prototype matching (one mean feature per support mask) misses objects with holes and
slots, and that dynamic convolution over local structure recovers them. So the named classes differ by *shape and
structure* (solid disk vs ring vs ring with a slot, solid square vs frame vs frame with a gap vs window grid, cross vs
cross with a hole...). Two versions (``benchmarks``): in ``categories`` (v2, the default) a class also has an
appearance of its own, 7 hues shared by the 20 classes and a texture kind each, and 200 generated classes join the
training split; in ``shapes`` (v1) colour and texture carry no class information, every object and the background
drawing them from one shared pool. Each image holds one or two objects of its *primary* class plus 1-3 distractors
of other classes, at varied scale, position, rotation and aspect, and an ignore band (255) a few pixels wide along
every label boundary, as in VOC.

Determinism: image ``j`` of a split is a pure function of ``(benchmark, seed, split, j, image_size)``. Its layout
comes from ``np.random.default_rng([seed, split_code, j])`` (PCG64), never from a global RNG, so any process on any
machine renders identical pixels in any access order.

One concern per module: ``benchmarks`` (the versions, class appearances and generated classes), ``shapes`` (the class
silhouettes as predicates, their outlines, procedural shapes), ``textures`` (the texture pool and how a texture is
painted), ``layout`` (everything random about one image, drawn up front, and the rendering of its image, its label
with the ignore band and its hole pixels) and ``source`` (the benchmark as a dataset source).
"""

from .benchmarks import BENCHMARKS, DEFAULT_BENCHMARK, SyntheticBenchmark, get_benchmark
from .layout import (
    OBJECT_RADIUS,
    SPLIT_CODES,
    Layout,
    PlacedObject,
    add_ignore_band,
    ignore_band_radius,
    make_layout,
    render_holes,
    render_image,
    render_label,
)
from .shapes import OUTLINES, SHAPES, GeneratedShape, ShapeFn
from .source import DEFAULT_IMAGES_PER_CLASS, REFERENCE_SIZE, SyntheticSource
from .textures import TEXTURES, Texture, paint_texture, random_texture, texture_mean

__all__ = [
    "BENCHMARKS",
    "DEFAULT_BENCHMARK",
    "DEFAULT_IMAGES_PER_CLASS",
    "GeneratedShape",
    "Layout",
    "OBJECT_RADIUS",
    "OUTLINES",
    "PlacedObject",
    "REFERENCE_SIZE",
    "SHAPES",
    "SPLIT_CODES",
    "ShapeFn",
    "SyntheticBenchmark",
    "SyntheticSource",
    "TEXTURES",
    "Texture",
    "add_ignore_band",
    "get_benchmark",
    "ignore_band_radius",
    "make_layout",
    "paint_texture",
    "random_texture",
    "render_holes",
    "render_image",
    "render_label",
    "texture_mean",
]
