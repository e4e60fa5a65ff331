"""Workflows from files, for `core.subworkflow` in ad-hoc runs: `FileResolver`.

It implements the `WorkflowResolver` port (`interpreter.run.services`); the service's store
provides its own (tenant-scoped, versioned). The `FileResolver` looks in the running
definition's folder and in `ALTLAS_WORKFLOW_DIRS`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interpreter.settings import get_engine_settings
from pieces.base import PieceError


def definition_version(document: dict[str, Any]) -> str:
    """A content hash naming a definition that has no stored version (`sha-` + 12 hex digits)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ResolvedWorkflow:
    """A definition found by a resolver, with the version it is known by."""

    definition: dict[str, Any]
    version: str


class FileResolver:
    """Workflows as JSON files: `<dir>/<workflow_id>.json`, or any `*.json` whose `id` matches."""

    def __init__(self, directories: Sequence[str | Path] = ()) -> None:
        configured = [Path(d) for d in get_engine_settings().workflow_dirs]
        self.directories = [Path(d) for d in directories] + configured

    def with_directory(self, directory: str | Path) -> FileResolver:
        """A resolver that looks in `directory` first."""
        resolver = FileResolver()
        resolver.directories = [Path(directory), *self.directories]
        return resolver

    async def resolve(
        self, *, tenant: str, workflow_id: str, version: str | None
    ) -> ResolvedWorkflow:
        del tenant  # files are shared by every tenant of an ad-hoc run
        for document in self._candidates(workflow_id):
            found = definition_version(document)
            if version is None or version == found:
                return ResolvedWorkflow(document, found)
            raise PieceError(
                f"workflow {workflow_id!r} from a file has only version {found!r}, not {version!r}",
                error_type="WorkflowNotFound",
                retryable=False,
            )
        searched = ", ".join(str(d) for d in self.directories) or "(no directories)"
        raise PieceError(
            f"workflow {workflow_id!r} not found; looked for <id>.json and matching `id` in: "
            f"{searched} (add directories with ALTLAS_WORKFLOW_DIRS)",
            error_type="WorkflowNotFound",
            retryable=False,
        )

    def _candidates(self, workflow_id: str) -> list[dict[str, Any]]:
        found = []
        for directory in self.directories:
            exact = directory / f"{workflow_id}.json"
            paths = [exact] if exact.is_file() else sorted(directory.glob("*.json"))
            for path in paths:
                try:
                    document = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(document, dict) and document.get("id") == workflow_id:
                    found.append(document)
                    break
            if found:
                break
        return found
