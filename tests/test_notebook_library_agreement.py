"""Functions and modules a notebook builds inline agree with the library's versions on the same inputs.

The convention (docs/notebooks.md, "Teaching inline, then using the library"):

* A code cell that re-implements a library object starts with one line per object it defines::

      # library: dpcn_lite.modules.prototypes.masked_average_pooling

  and defines a function or class of the same name (the last part of the path). The cell must be plain Python and
  self-contained: ``torch``, ``nn``, ``F`` (torch.nn.functional), ``np`` and ``math`` are provided; anything else it
  imports itself. Marked cells of one notebook run in order in one namespace, so a later marked cell may call an
  earlier one.
* ``EXAMPLES`` below gives, for each marked library path, the inputs both versions are called with (several shapes,
  edge cases). A marked path without an entry fails with a message saying so.
* Functions are called on clones of the same inputs. Classes are built with the same arguments, the notebook's copy
  loads the library's ``state_dict`` (so it must use the library's parameter names), both are put in eval mode, and
  their outputs on the same inputs are compared with ``torch.testing.assert_close``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
MARKER_RE = re.compile(r"^# library: ([A-Za-z_][\w.]*)\s*$")
RTOL, ATOL = 1e-5, 1e-6


@dataclasses.dataclass
class Example:
    """One call: ``obj(*args, **kwargs)``; for classes, built first with ``cls(*init_args, **init_kwargs)``."""

    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    init_args: tuple = ()
    init_kwargs: dict = dataclasses.field(default_factory=dict)


def _mask_with_ignore(generator: torch.Generator, *shape: int) -> torch.Tensor:
    mask = torch.randint(0, 2, shape, generator=generator)
    mask[torch.rand(shape, generator=generator) < 0.1] = 255
    return mask


def _overlay_mask_examples(generator: torch.Generator) -> list[Example]:
    image = torch.rand(7, 5, 3, generator=generator).numpy()
    mask = _mask_with_ignore(generator, 7, 5).numpy()
    return [Example((image, mask)), Example((image * 255, mask), {"alpha": 0.3})]


def _linear_examples(generator: torch.Generator) -> list[Example]:
    return [Example((torch.randn(4, 3, generator=generator),), init_args=(3, 2))]


# Library path -> a function of a seeded generator returning the examples to compare on. Add an entry when a notebook
# marks a new cell; the two below serve the mechanism's own tests and may serve notebooks too.
def _binarize_examples(generator: torch.Generator) -> list[Example]:
    label = torch.randint(0, 6, (9, 7), generator=generator).to(torch.uint8).numpy()
    label[0, :3] = 255
    return [Example((label, 3)), Example((label, 5)), Example((np.full((4, 4), 255, np.uint8), 1))]


def _window_examples(generator: torch.Generator) -> list[Example]:
    return [Example(((5, 1),)), Example(((3, 3),)), Example(((1, 5),)), Example(((1, 1),))]


def _shift_examples(generator: torch.Generator) -> list[Example]:
    features = torch.randn(2, 3, 6, 5, generator=generator)
    return [Example((features, oy, ox)) for oy, ox in ((0, 0), (2, 0), (-1, 1), (0, -2), (6, 0))]


def _pixel_map_examples(generator: torch.Generator) -> list[Example]:
    maps = torch.randn(2, 4, 6, 5, generator=generator)
    maps[0, :, 0, 0] = 0.0  # a zero vector / a flat corner
    return [Example((maps,)), Example((maps.abs(),), {"eps": 1e-3}), Example((torch.zeros(1, 1, 3, 3),))]


def _normalised_pair(generator: torch.Generator, channels: int = 8, support_hw=(6, 5), query_hw=(5, 7)):
    support = torch.randn(2, channels, *support_hw, generator=generator)
    support = support * (torch.rand(2, 1, *support_hw, generator=generator) > 0.4)  # masked-out support pixels
    query = torch.randn(2, channels, *query_hw, generator=generator)
    unit = lambda x: x / (x.norm(dim=1, keepdim=True) + 1e-7)  # noqa: E731
    return unit(support), unit(query)


def _correlation_examples(generator: torch.Generator) -> list[Example]:
    support, query = _normalised_pair(generator)
    return [Example((support, query, window)) for window in ((5, 1), (3, 3), (1, 5), (1, 1))]


def _correlation_shifted_examples(generator: torch.Generator) -> list[Example]:
    support, query = _normalised_pair(generator)
    cosine = torch.bmm(support.flatten(2).transpose(1, 2), query.flatten(2))
    return [Example((cosine, window, (6, 5), (5, 7))) for window in ((5, 1), (3, 3), (1, 5))]


def _ffm_examples(generator: torch.Generator) -> list[Example]:
    query = torch.randn(2, 6, 5, 4, generator=generator)
    prototype = torch.randn(2, 6, generator=generator)
    pseudo = torch.rand(2, 1, 5, 4, generator=generator)
    return [Example((query, prototype, pseudo), init_args=(6,)), Example((query, prototype, pseudo), init_args=(6, 1))]


def _foreground_vector_examples(generator: torch.Generator) -> list[Example]:
    support = torch.randn(3, 4, 5, 6, generator=generator)
    soft = torch.rand(3, 1, 5, 6, generator=generator)
    return [Example((support, soft)), Example((support, soft), {"threshold": 0.9}), Example((support, soft * 0))]


def _pool_sequence_examples(generator: torch.Generator) -> list[Example]:
    return [Example((torch.randn(n, 4, generator=generator), length)) for n, length in ((37, 5), (5, 25), (2, 5), (1, 25))]


def _kernel_generator_examples(generator: torch.Generator) -> list[Example]:
    return [Example((torch.randn(2, 6, length, generator=generator),), init_args=(6,)) for length in (5, 25)]


def _dynamic_conv_examples(generator: torch.Generator) -> list[Example]:
    features = torch.randn(3, 4, 7, 6, generator=generator)
    return [Example((features, torch.randn(3, 4, kh, kw, generator=generator))) for kh, kw in ((5, 1), (1, 5), (5, 5), (3, 3))]


def _masked_average_examples(generator: torch.Generator) -> list[Example]:
    features = torch.randn(2, 5, 6, 4, generator=generator)
    soft = torch.rand(2, 1, 6, 4, generator=generator)
    return [Example((features, soft)), Example((features, (soft > 0.5).float())), Example((features, soft * 0)),
            Example((features, soft), {"eps": 1e-2})]


def _cosine_prior_examples(generator: torch.Generator) -> list[Example]:
    query = torch.randn(2, 6, 5, 7, generator=generator)
    support = torch.randn(2, 6, 6, 5, generator=generator)
    mask = (torch.rand(2, 1, 6, 5, generator=generator) > 0.5).float()
    return [Example((query, support, mask)), Example((query, support, torch.ones_like(mask)))]


EXAMPLES: dict[str, Callable[[torch.Generator], list[Example]]] = {
    "dpcn_lite.modules.prototypes.masked_average_pooling": _masked_average_examples,
    "dpcn_lite.modules.prototypes.cosine_prior": _cosine_prior_examples,
    "dpcn_lite.modules.prototypes.expand_prototype": lambda g: [Example((torch.randn(2, 4, generator=g), (3, 5)))],
    "dpcn_lite.viz.overlay_mask": _overlay_mask_examples,
    "torch.nn.Linear": _linear_examples,
    "data_utils.episodes.binarize": _binarize_examples,
    "dpcn_lite.modules.sam.window_offsets": _window_examples,
    "dpcn_lite.modules.sam.shift_map": _shift_examples,
    "dpcn_lite.modules.prototypes.l2_normalize_pixels": _pixel_map_examples,
    "dpcn_lite.modules.prototypes.minmax_normalize": _pixel_map_examples,
    "dpcn_lite.modules.sam.correlation_loop": _correlation_examples,
    "dpcn_lite.modules.sam.correlation_unfold": _correlation_examples,
    "dpcn_lite.modules.sam.correlation_shifted": _correlation_shifted_examples,
    "dpcn_lite.modules.ffm.FeatureFilteringModule": _ffm_examples,
    "dpcn_lite.modules.dcm.foreground_vectors": _foreground_vector_examples,
    "dpcn_lite.modules.dcm.pool_sequence": _pool_sequence_examples,
    "dpcn_lite.modules.dcm.KernelGenerator": _kernel_generator_examples,
    "dpcn_lite.modules.dcm.dynamic_depthwise_conv": _dynamic_conv_examples,
    "dpcn_lite.modules.dcm.dynamic_depthwise_conv_loop": _dynamic_conv_examples,
}


# ------------------------------------------------------------------------------------------------ the mechanism


def marked_cells(nb: nbformat.NotebookNode) -> list[tuple[int, list[str], str]]:
    """(cell index, library paths, source) for every code cell that starts with ``# library:`` lines."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        paths = []
        for line in cell.source.splitlines():
            match = MARKER_RE.match(line.strip())
            if not match:
                break
            paths.append(match.group(1))
        if paths:
            found.append((index, paths, cell.source))
    return found


def import_object(path: str) -> Any:
    """``dpcn_lite.modules.sam.fast_sam`` -> the object, with an error naming the path when it does not exist."""
    module_name, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise AssertionError(f"'# library: {path}' names nothing importable ({error})") from error


def notebook_definitions(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Run the marked cells in order in one namespace; return {library path: the notebook's object}."""
    namespace: dict[str, Any] = {"torch": torch, "nn": nn, "F": F, "np": np, "math": math}
    definitions = {}
    for index, paths, source in marked_cells(nb):
        exec(compile(source, f"<notebook cell {index}>", "exec"), namespace)  # noqa: S102 (our own notebooks)
        for path in paths:
            name = path.rpartition(".")[2]
            if name not in namespace:
                raise AssertionError(f"cell {index} is marked '# library: {path}' but defines no '{name}'")
            definitions[path] = namespace[name]
    return definitions


def _comparable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _comparable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple
        return {k: _comparable(v) for k, v in value._asdict().items()}
    return value


def _run(obj: Any, example: Example, library_obj: Any | None = None) -> Any:
    args, kwargs = copy.deepcopy(example.args), copy.deepcopy(example.kwargs)
    if isinstance(obj, type):
        instance = obj(*example.init_args, **example.init_kwargs)
        if library_obj is not None:
            instance.load_state_dict(library_obj.state_dict(), strict=True)
        instance.eval()
        with torch.no_grad():
            return instance(*args, **kwargs), instance
    with torch.no_grad():
        return obj(*args, **kwargs), None


def assert_agrees(notebook_obj: Any, library_obj: Any, examples: list[Example], where: str) -> None:
    """Call both on every example and compare; classes share the library instance's weights."""
    for number, example in enumerate(examples):
        library_out, library_instance = _run(library_obj, example)
        notebook_out, _ = _run(notebook_obj, example, library_instance)
        try:
            torch.testing.assert_close(_comparable(notebook_out), _comparable(library_out), rtol=RTOL, atol=ATOL)
        except AssertionError as error:
            raise AssertionError(f"{where}, example {number}: the notebook and the library disagree\n{error}") from None


def check_notebook_agrees(nb: nbformat.NotebookNode, examples: dict = EXAMPLES, name: str = "notebook") -> list[str]:
    """Compare every marked definition of ``nb`` with the library; return the paths checked (asserts on failure)."""
    definitions = notebook_definitions(nb)
    for path, notebook_obj in definitions.items():
        if path not in examples:
            raise AssertionError(
                f"{name}: '# library: {path}' has no example inputs: add an entry to EXAMPLES in {Path(__file__).name}"
            )
        generator = torch.Generator().manual_seed(0)
        assert_agrees(notebook_obj, import_object(path), examples[path](generator), f"{name}: {path}")
    return list(definitions)


# ------------------------------------------------------------------------------------------ the course notebooks

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MARKED = [(p, path) for p in NOTEBOOKS for _, paths, _ in marked_cells(nbformat.read(p, as_version=4)) for path in paths]

# Notebooks that rebuild no library object inline, with the reason. Every other notebook must mark what it rebuilds:
# an unmarked re-implementation could drift from the library unnoticed.
USES_LIBRARY_AS_IS = {
    "00_welcome.ipynb": "orientation: draws a toy episode, rebuilds nothing",
    "02_backbone_features.ipynb": "uses the backbone as it is; its hand-made concat is asserted equal in the notebook",
    "07_dpcn_end_to_end.ipynb": "assembles library modules; the assembly is asserted equal to DPCN in the notebook",
    "08_kshot.ipynb": "compares the library's own k-shot fusion switches",
    "09_ablations_and_benchmarks.ipynb": "reads the results and benchmark files",
}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_marked_cells_agree_with_the_library(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    checked = check_notebook_agrees(nb, name=notebook.name)  # raises on any disagreement
    if notebook.name not in USES_LIBRARY_AS_IS:
        assert checked, (
            f"{notebook.name} marks no cell with '# library:'. Mark the cells that rebuild library objects, or list "
            f"the notebook in USES_LIBRARY_AS_IS with the reason."
        )


def test_the_exemption_list_names_real_notebooks_and_leaves_most_compared() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert set(USES_LIBRARY_AS_IS) <= names, f"stale entries: {sorted(set(USES_LIBRARY_AS_IS) - names)}"
    assert MARKED, "no notebook marks a cell with '# library:': the agreement check would cover nothing"
    assert all(path in EXAMPLES for _, path in MARKED), "every marked library path needs an EXAMPLES entry"


# ------------------------------------------------------------------ the mechanism, on small synthetic notebooks

OVERLAY_SOURCE = '''# library: dpcn_lite.viz.overlay_mask
def overlay_mask(image, mask, alpha=0.3, dim=0.35, outline=True):
    """Dim the rest, tint the mask, outline it; whiten ignore pixels."""
    out = np.asarray(image, dtype=np.float32).copy()
    if out.max() > 1.0:
        out = out / 255.0
    where, colour = np.asarray(mask) == 1, np.array((0.95, 0.30, 0.20), dtype=np.float32)
    out[~where] *= dim
    out[where] = (1 - alpha) * out[where] + alpha * colour
    if outline and where.any():
        p = np.pad(where, 1, mode="edge")
        out[where & ~(p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:])] = colour
    ignore = np.asarray(mask) == 255
    out[ignore] = 0.5 * out[ignore] + 0.5 * np.ones(3, dtype=np.float32)
    return np.clip(out, 0.0, 1.0)
'''

LINEAR_SOURCE = """# library: torch.nn.Linear
class Linear(nn.Module):
    def __init__(self, inputs, outputs):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(outputs, inputs))
        self.bias = nn.Parameter(torch.empty(outputs))

    def forward(self, x):
        return x @ self.weight.T + self.bias{mistake}
"""


def _notebook(*sources: str) -> nbformat.NotebookNode:
    return new_notebook(cells=[new_markdown_cell("# 42 · Synthetic")] + [new_code_cell(s) for s in sources])


def test_an_agreeing_function_and_module_pass() -> None:
    nb = _notebook("import os", OVERLAY_SOURCE, LINEAR_SOURCE.format(mistake=""))
    assert check_notebook_agrees(nb) == ["dpcn_lite.viz.overlay_mask", "torch.nn.Linear"]


def test_a_disagreeing_function_fails() -> None:
    wrong = OVERLAY_SOURCE.replace("out[~where] *= dim", "out[~where] *= 1 - dim")
    with pytest.raises(AssertionError, match="disagree"):
        check_notebook_agrees(_notebook(wrong))


def test_a_disagreeing_module_fails_even_with_shared_weights() -> None:
    with pytest.raises(AssertionError, match="disagree"):
        check_notebook_agrees(_notebook(LINEAR_SOURCE.format(mistake=" * 1.001")))


def test_unknown_marks_and_missing_examples_are_errors() -> None:
    with pytest.raises(AssertionError, match="defines no 'overlay_mask'"):
        check_notebook_agrees(_notebook("# library: dpcn_lite.viz.overlay_mask\ndef overlay(image, mask):\n    pass"))
    with pytest.raises(AssertionError, match="no example inputs"):
        check_notebook_agrees(_notebook(OVERLAY_SOURCE), examples={})
    with pytest.raises(AssertionError, match="names nothing importable"):
        import_object("dpcn_lite.viz.no_such_helper")


def test_only_leading_marker_lines_count() -> None:
    nb = _notebook("x = 1\n# library: dpcn_lite.viz.overlay_mask", OVERLAY_SOURCE)
    assert [paths for _, paths, _ in marked_cells(nb)] == [["dpcn_lite.viz.overlay_mask"]]
