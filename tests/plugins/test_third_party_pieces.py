"""A third-party piece package, installed and found through its entry point: `acme-pieces`.

The package under `acme-pieces/` is the worked example of `docs/pieces.md`. It is built and
installed with pip (not editable) into a temporary directory once per module; each test that
needs it puts that directory on `sys.path` and restores `sys.path`, `sys.modules` and the cached
registry and settings afterwards, so no other test sees it. Tests cover: discovery through the
`altlas.pieces` entry point under the allow-list, refusal without it, validation of node inputs
against the piece's schema, runs through the engine on the session's Prefect server, the
`altlas-flows` commands a user types, the package's own unit tests, and that the guide quotes the
package's files exactly.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from interpreter import arun_workflow, validate
from pieces.registry import (
    ENTRY_POINT_GROUP,
    LoadProblem,
    PieceRegistry,
    UnknownPieceError,
    default_registry,
)
from pieces.settings import get_piece_settings
from tests.support.prefect import flow_run_logs

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(__file__).resolve().parent / "acme-pieces"
EXAMPLES = PACKAGE / "examples"
GUIDE = ROOT / "docs" / "pieces.md"
DISTRIBUTION = "acme-pieces"
KEY = "acme.invoice_total"
ENTRY_POINT = "acme.invoice_total = acme_pieces:InvoiceTotalPiece"
SIGNING_KEY = "acme-signing-key-for-tests"

EXPECTED_INVOICE = {
    "currency": "EUR",
    "lines": 2,
    "subtotal": 105.47,
    "discount": 0.0,
    "tax": 21.09,
    "total": 126.56,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`acme-pieces` built by its own build backend and installed into an empty directory."""
    target = tmp_path_factory.mktemp("acme-site")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet"]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")  # the backend is here already: nothing to fetch
    done = subprocess.run(
        [*command, "--target", str(target), str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert done.returncode == 0, f"pip could not install {PACKAGE}:\n{done.stdout}{done.stderr}"
    return target


def _forget_loaded_pieces() -> None:
    importlib.invalidate_caches()
    default_registry.cache_clear()
    get_piece_settings.cache_clear()


@pytest.fixture
def on_path(site: Path) -> Iterator[Path]:
    """`site` importable for one test, as if installed; nothing of it stays afterwards."""
    saved_path = list(sys.path)
    sys.path.insert(0, str(site))
    _forget_loaded_pieces()
    try:
        yield site
    finally:
        sys.path[:] = saved_path
        for name in [m for m in sys.modules if m == "acme_pieces" or m.startswith("acme_pieces.")]:
            del sys.modules[name]
        _forget_loaded_pieces()


@pytest.fixture
def registry(on_path: Path) -> PieceRegistry:
    """The pieces a worker with `ALTLAS_PIECES_ALLOW=acme-pieces` loads."""
    return PieceRegistry.from_entry_points(allow=[DISTRIBUTION])


def _acme_problems(registry: PieceRegistry) -> list[LoadProblem]:
    return [p for p in registry.problems if p.distribution == DISTRIBUTION]


# --- discovery and the allow-list ---------------------------------------------------------------


@pytest.mark.parametrize("allowed", ["acme-pieces", "acme_pieces", "ACME.Pieces"])
def test_the_entry_point_registers_the_piece_when_its_distribution_is_allowed(
    on_path: Path, allowed: str
) -> None:
    (declared,) = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == KEY]
    assert declared.value == "acme_pieces:InvoiceTotalPiece"
    assert declared.dist is not None
    assert declared.dist.name == DISTRIBUTION

    registry = PieceRegistry.from_entry_points(allow=[allowed])

    piece = registry.action(KEY)
    assert registry.origin(KEY) == DISTRIBUTION
    assert Path(inspect.getfile(piece)).is_relative_to(on_path)  # the installed copy
    assert piece.display_name == "Invoice total"
    assert [s.name for s in piece.secrets] == ["acme_signing_key"]
    assert _acme_problems(registry) == []
    assert registry.origin("core.transform") == "altlas-workflow-engine"  # built-ins still there


def test_without_the_allow_list_the_package_is_refused_and_never_imported(on_path: Path) -> None:
    registry = PieceRegistry.from_entry_points(allow=())

    assert not registry.has_action(KEY)
    assert _acme_problems(registry) == [
        LoadProblem(ENTRY_POINT, DISTRIBUTION, "distribution not in ALTLAS_PIECES_ALLOW")
    ]
    assert "acme_pieces" not in sys.modules  # a refused plugin's code never runs
    # The tests' own setting (ALTLAS_PIECES_ALLOW="") gives the same default registry.
    assert not default_registry().has_action(KEY)
    problems = validate(EXAMPLES / "invoice.json")
    assert [p.path for p in problems] == ["/nodes/0/piece"]
    assert problems[0].message.startswith(
        "piece 'acme.invoice_total' is installed (distribution 'acme-pieces') but not allowed "
        "here: add 'acme-pieces' to ALTLAS_PIECES_ALLOW"
    )


def test_an_unset_allow_list_loads_every_installed_distribution(on_path: Path) -> None:
    registry = PieceRegistry.from_entry_points(allow=None)
    assert registry.origin(KEY) == DISTRIBUTION


def test_a_refusal_is_listed_but_not_logged_as_a_warning(
    on_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Refusing is the operator's choice: every process would otherwise warn about it."""
    with caplog.at_level(logging.INFO, logger="pieces.registry"):
        registry = PieceRegistry.from_entry_points(allow=())
    about_acme = [r for r in caplog.records if KEY in r.getMessage()]
    assert [r.levelno for r in about_acme] == [logging.INFO]
    assert [p.reason for p in _acme_problems(registry)] == [
        "distribution not in ALTLAS_PIECES_ALLOW"
    ]


def test_a_lookup_of_any_kind_names_the_refusal_and_never_suggests_a_refused_key(
    on_path: Path,
) -> None:
    refused = PieceRegistry.from_entry_points(allow=())
    with pytest.raises(UnknownPieceError) as caught:
        refused.any(KEY)
    assert str(caught.value) == (
        "piece 'acme.invoice_total' is installed (distribution 'acme-pieces') but not allowed "
        "here: add 'acme-pieces' to ALTLAS_PIECES_ALLOW"
    )
    assert caught.value.refused_from == DISTRIBUTION
    with pytest.raises(UnknownPieceError) as typo:
        refused.any("acme.invoice_totl")
    assert typo.value.suggestion is None  # not loaded, so not offered

    allowed = PieceRegistry.from_entry_points(allow=[DISTRIBUTION])
    with pytest.raises(UnknownPieceError) as typo:
        allowed.any("acme.invoice_totl")
    assert typo.value.suggestion == KEY


# --- validation and runs --------------------------------------------------------------------


def test_node_inputs_are_checked_against_the_piece_schema(registry: PieceRegistry) -> None:
    assert validate(EXAMPLES / "invoice.json", registry=registry) == []

    problems = validate(EXAMPLES / "invoice-invalid.json", registry=registry)
    assert [(p.path, p.message) for p in problems] == [
        (
            "/nodes/0/input/currency",
            '`currency` must match the pattern ^[A-Z]{3}$, got string "eur"',
        ),
        ("/nodes/0/input/lines/0/quantity", "`quantity` must be greater than 0, got integer 0"),
    ]

    typo = json.loads((EXAMPLES / "invoice.json").read_text())
    typo["nodes"][0]["input"]["tax_rate"] = 20
    assert [p.path for p in validate(typo, registry=registry)] == ["/nodes/0/input/tax_rate"]


@pytest.mark.usefixtures("engine")
async def test_a_workflow_runs_the_piece_end_to_end(registry: PieceRegistry) -> None:
    result = await arun_workflow(
        EXAMPLES / "invoice.json",
        {"customer": "Zed"},
        secrets={"acme_signing_key": SIGNING_KEY},
        registry=registry,
    )

    assert result.state == "completed", result.error
    invoice = result.output["invoice"]
    assert {k: v for k, v in invoice.items() if k != "signature"} == EXPECTED_INVOICE
    assert re.fullmatch(r"[0-9a-f]{64}", invoice["signature"])
    assert result.output["summary"] == "Invoice for Zed: 126.56 EUR"
    assert result.nodes["total"].attempts == 1
    logs = await flow_run_logs(result.flow_run_id)
    assert "invoice of 2 line(s): total 126.56 EUR (signed)" in logs


@pytest.mark.usefixtures("engine")
async def test_a_non_retryable_piece_error_fails_the_node_at_once(
    registry: PieceRegistry,
) -> None:
    result = await arun_workflow(EXAMPLES / "invoice.json", {"discount": 500}, registry=registry)

    assert result.state == "failed"
    total = result.nodes["total"]
    assert total.status == "failed"
    assert total.attempts == 1  # the node allows 3, but the piece said retrying cannot help
    assert total.error is not None
    assert total.error["type"] == "InvalidDiscount"
    assert total.error["message"] == "discount 500.00 EUR is larger than the subtotal 105.47 EUR"
    assert result.nodes["summary"].status == "skipped"


@pytest.mark.usefixtures("engine")
async def test_an_input_templated_into_a_wrong_value_fails_at_run_time(
    registry: PieceRegistry,
) -> None:
    lines = [{"description": "Widget", "quantity": -1, "unit_price": 1}]
    result = await arun_workflow(EXAMPLES / "invoice.json", {"lines": lines}, registry=registry)

    total = result.nodes["total"]
    assert (total.status, total.attempts) == ("failed", 1)
    assert total.error is not None
    assert total.error["type"] == "InvalidInput"
    assert "lines/0/quantity" in total.error["message"]


# --- what a user types --------------------------------------------------------------------------


def altlas_flows(
    site: Path, *args: str, allow: str = DISTRIBUTION
) -> subprocess.CompletedProcess[str]:
    """`altlas-flows ARGS` from the repository root with `site` installed and allowed."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("altlas-flows")), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(site), "ALTLAS_PIECES_ALLOW": allow},
    )


def test_pieces_list_and_show_print_the_installed_piece(site: Path) -> None:
    listing = altlas_flows(site, "pieces", "list")
    assert listing.returncode == 0, listing.stderr
    (row,) = [line for line in listing.stdout.splitlines() if line.startswith(KEY)]
    assert row.split()[1:4] == ["action", "1.0.0", "finance"]
    assert row.endswith("Invoice total  [acme-pieces]")

    shown = altlas_flows(site, "pieces", "show", KEY)
    assert shown.returncode == 0, shown.stderr
    info: dict[str, Any] = json.loads(shown.stdout)
    assert (info["key"], info["kind"], info["origin"]) == (KEY, "action", DISTRIBUTION)
    assert info["secrets"] == [
        {
            "name": "acme_signing_key",
            "description": "HMAC-SHA256 key that signs the totals (unset: no signature).",
            "optional": True,
        }
    ]
    schema = info["input_schema"]
    assert schema["required"] == ["currency", "lines"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"currency", "lines", "discount", "tax_rate_percent"}
    assert "signature" in info["output_schema"]["properties"]

    refused = altlas_flows(site, "pieces", "list", allow="")
    assert not any(line.startswith(f"{KEY} ") for line in refused.stdout.splitlines())
    assert f"not loaded: {ENTRY_POINT} (acme-pieces): distribution not in " in refused.stdout


def test_a_refused_package_stays_out_of_other_commands(site: Path) -> None:
    """Installed but not allowed: only `pieces list` and a lookup of its own key mention it."""
    hint = "(`altlas-flows pieces list` shows the installed pieces)"
    typo = altlas_flows(site, "pieces", "show", "core.transfrom", allow="")
    assert typo.returncode == 2
    assert typo.stderr == (
        f"altlas-flows pieces show: unknown piece 'core.transfrom'; did you mean "
        f"'core.transform'? {hint}\n"
    )

    checked = altlas_flows(site, "validate", "definitions/examples/chain.json", allow="")
    assert (checked.returncode, checked.stderr) == (0, "")

    asked = altlas_flows(site, "pieces", "show", KEY, allow="")
    assert asked.returncode == 2
    assert asked.stderr == (
        "altlas-flows pieces show: piece 'acme.invoice_total' is installed (distribution "
        f"'acme-pieces') but not allowed here: add 'acme-pieces' to ALTLAS_PIECES_ALLOW {hint}\n"
    )


@pytest.mark.usefixtures("engine")
def test_validate_and_run_from_the_command_line(site: Path) -> None:
    checked = altlas_flows(site, "validate", "tests/plugins/acme-pieces/examples/invoice.json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == "tests/plugins/acme-pieces/examples/invoice.json: valid\n"

    ran = altlas_flows(
        site,
        "run",
        "tests/plugins/acme-pieces/examples/invoice.json",
        "--param",
        "discount=5.47",
        "--secret",
        f"acme_signing_key={SIGNING_KEY}",
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = json.loads(ran.stdout)
    assert result["state"] == "completed"
    assert result["output"]["summary"] == "Invoice for Ada Ltd: 120.00 EUR"
    assert result["output"]["invoice"]["total"] == 120.0


# --- the package's own tests and the guide ------------------------------------------------------


def test_the_package_s_own_unit_tests_pass_against_the_installed_copy(site: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b5 passed\b", done.stdout), done.stdout


QUOTED = re.compile(r"^`(tests/plugins/acme-pieces/[^`]+)`:\n\n```[a-z]*\n(.*?)^```$", re.M | re.S)


def test_the_guide_quotes_the_package_files_exactly() -> None:
    quotes = QUOTED.findall(GUIDE.read_text(encoding="utf-8"))
    quoted = {path for path, _ in quotes}
    assert quoted >= {
        "tests/plugins/acme-pieces/pyproject.toml",
        "tests/plugins/acme-pieces/acme_pieces/__init__.py",
        "tests/plugins/acme-pieces/acme_pieces/invoice.py",
        "tests/plugins/acme-pieces/tests/test_invoice_total.py",
        "tests/plugins/acme-pieces/examples/invoice.json",
        "tests/plugins/acme-pieces/examples/invoice-invalid.json",
    }
    for path, text in quotes:
        assert text == (ROOT / path).read_text(encoding="utf-8"), f"{path} differs from the guide"
