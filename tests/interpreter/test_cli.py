"""`altlas-flows` as a user runs it: a real subprocess, real files, the session's Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import ROOT, run_cli

EXAMPLES = ROOT / "definitions" / "examples"


def altlas(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={**os.environ, **(env or {})}, timeout=timeout)


def test_validate_valid_files_exits_zero() -> None:
    done = altlas("validate", str(EXAMPLES / "chain.json"), str(EXAMPLES / "map.json"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": valid") == 2


def test_validate_reports_problems_as_json_with_pointers(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"format": 1, "id": "x", "nodes": [{"id": "a", "piece": "htp.request"}]})
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    done = altlas(
        "validate", "--format", "json", str(bad), str(broken), str(EXAMPLES / "chain.json")
    )
    assert done.returncode == 1
    rows = json.loads(done.stdout)
    assert rows[0]["file"] == str(bad)
    assert rows[0]["path"] == "/nodes/0/piece"
    assert "http.request" in rows[0]["message"]  # lists the known pieces
    assert rows[1]["file"] == str(broken)
    assert rows[1]["path"] == ""
    assert "line 1" in rows[1]["message"]
    assert len(rows) == 2


def test_validate_text_names_file_and_pointer(tmp_path: Path) -> None:
    bad = tmp_path / "cycle.json"
    bad.write_text(
        json.dumps(
            {
                "format": 1,
                "id": "cyc",
                "nodes": [
                    {"id": "a", "piece": "core.delay", "input": {"seconds": 0}},
                    {"id": "b", "piece": "core.delay", "input": {"seconds": 0}},
                ],
                "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}],
            }
        )
    )
    done = altlas("validate", str(bad))
    assert done.returncode == 1
    assert f"{bad}: /edges/1: cycle: a -> b -> a" in done.stdout


@pytest.mark.usefixtures("engine")
def test_run_prints_the_result_as_json() -> None:
    done = altlas(
        "run", str(EXAMPLES / "branch-join.json"), "--param", "amount=20", "--param", "customer=Zed"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "completed"
    assert result["output"] == {"decision": "approved Zed order of 20", "reviewed": False}
    assert result["nodes"]["review"]["status"] == "skipped"
    # The summary artifact, delivered as the process exits, reached the server; nothing was lost.
    assert "Error emitting event" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[result["flow_run_id"]])
            )
        )
    assert [artifact.type for artifact in artifacts] == ["table"]


@pytest.mark.usefixtures("engine")
def test_run_params_json_and_string_typed_params() -> None:
    done = altlas(
        "run",
        str(EXAMPLES / "chain.json"),
        "--params-json",
        '{"name": "ignored"}',
        "--param",
        "name=123",  # the schema says string: stays "123", not the number 123
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"]["text"] == "HELLO, 123!"


@pytest.mark.usefixtures("engine")
def test_run_with_invalid_parameters_exits_2_and_names_the_parameter() -> None:
    done = altlas("run", str(EXAMPLES / "order-sync.json"), "--param", "since=yesterday")
    assert done.returncode == 2
    assert "/since" in done.stderr


@pytest.mark.usefixtures("engine")
def test_run_of_a_failing_workflow_exits_1(tmp_path: Path) -> None:
    failing = tmp_path / "fails.json"
    failing.write_text(
        json.dumps(
            {
                "format": 1,
                "id": "fails",
                "nodes": [
                    {"id": "a", "piece": "core.transform", "input": {"value": "{{ params.x }}"}}
                ],
            }
        )
    )
    done = altlas("run", str(failing))
    assert done.returncode == 1
    assert json.loads(done.stdout)["state"] == "failed"


BUILT_INS = {"core.delay", "core.transform", "core.map", "http.request", "schedule", "webhook"}
NOT_ALLOWED = "distribution not in ALTLAS_PIECES_ALLOW"
LIST_HINT = "(`altlas-flows pieces list` shows the installed pieces)"


def test_pieces_list_shows_the_built_ins_whatever_else_is_installed() -> None:
    """The suite sets `ALTLAS_PIECES_ALLOW` to empty: piece packages installed in this environment
    (docs/pieces.md has users install `acme-pieces` into it) are refused, never loaded, and are no
    failure; the list is the same with or without them."""
    listing = altlas("pieces", "list", "--format", "json")
    assert listing.returncode == 0, listing.stderr
    catalogue = json.loads(listing.stdout)
    assert {row["key"] for row in catalogue["pieces"]} >= BUILT_INS
    assert {row["origin"] for row in catalogue["pieces"]} == {"altlas-workflow-engine"}
    assert [p for p in catalogue["problems"] if p["reason"] != NOT_ALLOWED] == []
    assert "not loaded" not in listing.stderr  # a refusal is listed, not warned about


def test_pieces_show_prints_a_piece_of_either_kind() -> None:
    shown = altlas("pieces", "show", "core.delay")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert (info["kind"], info["origin"]) == ("action", "altlas-workflow-engine")
    assert info["input_schema"]["properties"]["seconds"]["minimum"] == 0

    trigger = altlas("pieces", "show", "schedule")
    assert trigger.returncode == 0, trigger.stderr
    info = json.loads(trigger.stdout)
    assert info["kind"] == "trigger"
    assert "cron" in info["config_schema"]["properties"]
    assert "input_schema" not in info


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("core.transfrom", "; did you mean 'core.transform'?"),  # an action
        ("schedul", "; did you mean 'schedule'?"),  # a trigger
        ("nothing-like-it", ""),
    ],
)
def test_pieces_show_of_an_unknown_key_is_one_error(key: str, hint: str) -> None:
    missing = altlas("pieces", "show", key)
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert missing.stderr == f"altlas-flows pieces show: unknown piece {key!r}{hint} {LIST_HINT}\n"
