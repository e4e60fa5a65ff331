"""The documentation stays true: every setting documented, every linked file present."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from interpreter.settings import PREFECT_DEFAULTS, EngineSettings
from pieces.settings import PieceSettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def test_every_setting_is_documented_in_configuration_md() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for settings in (PieceSettings, EngineSettings):
        for name in settings.model_fields:
            assert f"`ALTLAS_{name.upper()}`" in text, f"ALTLAS_{name.upper()} is not documented"
    for name, value in PREFECT_DEFAULTS.items():
        assert f"| `{name}` | `{value}` |" in text


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
