"""Problems found in definitions and parameters, and the exceptions that carry them.

Main entry: `Problem` (a JSON Pointer plus a message saying how to fix it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def pointer(*parts: str | int) -> str:
    """Build a JSON Pointer (RFC 6901) from path parts: `pointer("nodes", 2, "piece")`."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a definition (or with a run's parameters).

    Attributes:
        path: a JSON Pointer into the document, e.g. `/nodes/2/piece` (`""` is the whole document).
        message: what is wrong and how to fix it.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        """`{"path", "message"}`, as the CLI and the API print problems."""
        return {"path": self.path, "message": self.message}


class _ProblemsError(ValueError):
    """An error that carries a list of problems and lists them in its message."""

    headline = "problems"

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: Sequence[Problem] = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{self.headline} ({len(self.problems)}):\n{lines}")


class DefinitionError(_ProblemsError):
    """The workflow definition is invalid; `problems` lists everything found, all at once."""

    headline = "invalid workflow definition"


class ParameterError(_ProblemsError):
    """The run's parameters do not satisfy the workflow's `parameters` schema."""

    headline = "invalid run parameters"
