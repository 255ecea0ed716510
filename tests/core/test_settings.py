"""Every setting is documented in README.md, under the environment variable that sets it."""

from __future__ import annotations

import re

import pytest
from pydantic_settings import BaseSettings

from core import settings as settings_mod
from tests.conftest import REPO

SETTINGS_CLASSES = [
    getattr(settings_mod, name)
    for name in settings_mod.__all__
    if isinstance(getattr(settings_mod, name), type) and issubclass(getattr(settings_mod, name), BaseSettings)
]


def _env_names() -> list[str]:
    names = []
    for cls in SETTINGS_CLASSES:
        prefix = cls.model_config.get("env_prefix", "")
        names += [f"{prefix}{field}".upper() for field in cls.model_fields]
    return names


def test_settings_classes_are_found() -> None:
    assert len(SETTINGS_CLASSES) >= 3


@pytest.mark.parametrize("env_name", _env_names())
def test_setting_is_in_the_readme_table(env_name: str) -> None:
    readme = (REPO / "README.md").read_text()
    assert re.search(rf"^\| `{env_name}` \|", readme, re.M), f"{env_name} missing from README"


def test_every_setting_has_a_description() -> None:
    for cls in SETTINGS_CLASSES:
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name}"
