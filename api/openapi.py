"""The OpenAPI document of the API, as exported to `docs/openapi.json` (`make openapi`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from api.main import create_app

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The document `app` serves at `/openapi.json`, as plain JSON values."""
    document: dict[str, Any] = json.loads(json.dumps(app.openapi()))
    return document


def export(path: Path = DEFAULT_PATH) -> None:
    """Write the document, stable and readable (sorted keys, indented)."""
    document = openapi_document(create_app(reconcile=False))
    path.write_text(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    export(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH)
