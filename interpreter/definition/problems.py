"""Problems found in definitions and parameters, and the exceptions that carry them.

Main entries: `Problem` (a JSON Pointer plus a message saying how to fix it), `DefinitionError`,
`ParameterError`, and `DefinitionFileError` (a definition file that cannot be read at all).

The whole document's pointer is `""` (RFC 6901). Text meant for people (`str(problem)`, the
CLI's text output) shows it as `(document)`: every other pointer starts with `/`, and `/` alone
is the pointer to a member named `""`, so it cannot stand for the whole document.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WHOLE_DOCUMENT = ""
"""The JSON Pointer of the whole document."""

WHOLE_DOCUMENT_LABEL = "(document)"
"""How text output shows `WHOLE_DOCUMENT`."""


def pointer(*parts: str | int) -> str:
    """Build a JSON Pointer (RFC 6901) from path parts: `pointer("nodes", 2, "piece")`."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def display_pointer(path: str) -> str:
    """A pointer as text output shows it: as is, but the whole document as `(document)`."""
    return path if path != WHOLE_DOCUMENT else WHOLE_DOCUMENT_LABEL


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
        return f"{display_pointer(self.path)}: {self.message}"

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


class DefinitionFileError(OSError):
    """A definition file that cannot be read at all: missing, a directory, not permitted.

    Not a `DefinitionError`: there is no document to point into, and nothing is wrong with the
    definition itself. An `OSError` with the usual `errno`, `strerror` and `filename`;
    `str(error)` is `cannot read FILE: REASON`.
    """

    def __init__(self, filename: str, reason: str, errno: int | None = None) -> None:
        super().__init__(errno, reason, filename)

    def __str__(self) -> str:
        return f"cannot read {self.filename}: {self.strerror}"
