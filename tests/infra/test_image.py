"""The image (infra/docker/Dockerfile) holds every package the project installs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_dockerfile_copies_every_top_level_package() -> None:
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    top = {p.split(".")[0] for p in packages}
    copied = set(re.findall(r"^COPY (\w+) \1$", (REPO / "infra/docker/Dockerfile").read_text(), re.M))
    assert top <= copied, f"not copied into the image: {sorted(top - copied)}"


def test_every_package_folder_is_installed() -> None:
    packages = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    top = {p.split(".")[0] for p in packages}
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for name in top
        for init in (REPO / name).rglob("__init__.py")
    }
    assert found <= packages, f"not installed (add to pyproject's packages): {sorted(found - packages)}"
