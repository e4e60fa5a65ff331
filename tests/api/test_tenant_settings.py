"""A tenant's settings, set from the server's command line, apply when its workflows are
validated: a piece it may not use is a problem at the node's `piece`."""

from __future__ import annotations

import json
import os

from tests.api.conftest import LiveService
from tests.support.cli import run_cli


def settings_cli(service: LiveService, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "ALTLAS_HOME": str(service.settings.home),
        "ALTLAS_DATABASE_URL": str(service.settings.database_url),
        "ALTLAS_SECRET_KEY": str(service.settings.secret_key),
    }
    done = run_cli("tenants", "settings", *args, env=env, timeout=60)
    return done.returncode, done.stdout, done.stderr


def test_allowed_pieces_apply_to_the_tenants_definitions(live_service: LiveService) -> None:
    tenant_id, client = live_service.tenant()
    code, out, err = settings_cli(
        live_service, tenant_id, "--set", json.dumps({"allowed_pieces": ["core.transform"]})
    )
    assert code == 0, err
    assert json.loads(out) == {"allowed_pieces": ["core.transform"]}
    definition = {
        "format": 1,
        "id": "uses-delay",
        "nodes": [{"id": "wait", "piece": "core.delay", "input": {"seconds": 0}}],
    }
    refused = client.post("/v1/workflows", json=definition)
    assert refused.status_code == 422
    problems = refused.json()["errors"]
    assert problems[0]["path"] == "/nodes/0/piece"
    assert f"not allowed for tenant '{tenant_id}'" in problems[0]["message"]
    checked = client.post("/v1/workflows/validate", json=definition).json()
    assert checked["valid"] is False
    # Another tenant is not affected.
    _, other = live_service.tenant()
    assert other.post("/v1/workflows", json=definition).status_code == 201


def test_invalid_settings_are_refused_with_the_field_named(live_service: LiveService) -> None:
    tenant_id, _ = live_service.tenant()
    code, _, err = settings_cli(
        live_service, tenant_id, "--set", json.dumps({"allowed_pieces": "core.transform"})
    )
    assert code == 1
    problem = json.loads(err)
    assert problem["errors"][0]["path"] == "/allowed_pieces"
    code, out, _ = settings_cli(live_service, tenant_id)
    assert (code, json.loads(out)) == (0, {})  # nothing was changed
