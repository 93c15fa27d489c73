"""The repository's install files agree with each other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_exactly_the_pyproject_dependencies() -> None:
    project = _pyproject()
    expected = set(project["dependencies"])
    for extra in ("notebooks", "dev"):
        expected |= set(project["optional-dependencies"][extra])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {d for d in pip_section if not d.startswith("-")}
    assert listed == expected, f"only in environment.yml: {listed - expected}; only in pyproject: {expected - listed}"
    assert "-e ." in pip_section


def test_constraints_pin_every_direct_dependency_exactly() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt line is not an exact pin: {line!r}"
            pins[_name(name)] = version
    project = _pyproject()
    direct = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    missing = sorted({_name(d) for d in direct} - set(pins))
    assert not missing, f"constraints.txt does not pin: {missing}"


def test_pyproject_uses_lower_bounds_only_so_colab_keeps_its_torch() -> None:
    for requirement in _pyproject()["dependencies"]:
        assert "==" not in requirement and "<" not in requirement, requirement


def _lower_bound(name: str) -> tuple[int, ...]:
    requirement = next(r for r in _pyproject()["dependencies"] if _name(r) == name)
    return tuple(int(part) for part in re.search(r">=\s*([\d.]+)", requirement).group(1).split("."))


def test_torch_lower_bounds_cover_the_apis_the_code_uses() -> None:
    """A bound below these would let pip keep a torch or torchvision the code fails on."""
    code = "\n".join(p.read_text() for folder in ("dpcn_lite", "data_utils") for p in (ROOT / folder).rglob("*.py"))
    torch, torchvision = _lower_bound("torch"), _lower_bound("torchvision")
    if "def make_params" in code:  # v2.Transform's public hooks; before 0.21 they were _get_params/_transform
        assert torchvision >= (0, 21)
    if "torch.amp.GradScaler" in code:
        assert torch >= (2, 3)
    if "tv_tensors" in code:
        assert torchvision >= (0, 16)
    assert torch[:2] == (2, torchvision[1] - 15), "torchvision 0.N is built for torch 2.(N-15): keep the pair"
