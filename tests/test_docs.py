"""The documentation stays true: every setting documented, every linked file present."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from api.settings import ApiSettings
from deployments.runner import WorkerSettings
from interpreter.settings import PREFECT_DEFAULTS, EngineSettings
from pieces.settings import PieceSettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def test_every_setting_is_documented_in_configuration_md() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for settings in (PieceSettings, EngineSettings, ApiSettings):
        for name in settings.model_fields:
            assert f"`ALTLAS_{name.upper()}`" in text, f"ALTLAS_{name.upper()} is not documented"
    for name in WorkerSettings.model_fields:
        variable = f"`ALTLAS_WORKER_{name.upper()}`"
        assert variable in text, f"{variable} is not documented"
    for name, value in PREFECT_DEFAULTS.items():
        assert f"| `{name}` | `{value}` |" in text


def _table_rows(text: str, heading: str) -> dict[str, list[str]]:
    """The rows of the tables under `## heading`, by their first cell (without backticks)."""
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def _documented_default(value: Any) -> str:
    """How the page writes a default: `unset`, `empty`, a number, or code."""
    if value is None:
        return "unset"
    if value == []:
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, Path) and not value.is_absolute():
        return f"`./{value}`"
    return f"`{value}`"


def test_every_service_setting_has_a_row_with_its_default() -> None:
    rows = _table_rows((ROOT / "docs" / "configuration.md").read_text(), "Service")
    for name, field in ApiSettings.model_fields.items():
        variable = f"ALTLAS_{name.upper()}"
        assert variable in rows, f"{variable} has no row under ## Service"
        default = field.get_default(call_default_factory=True)
        assert rows[variable][0] == _documented_default(default), variable


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
