"""The built-in `code.python` piece, user Python in a sandboxed process: `PythonCodePiece`.

Modules, each owning one concern:

- `piece`: the piece, its input model, limits and the mapping of outcomes to output or errors.
- `probe`: which isolation layers this worker can set up, probed once per process.
- `process`: starting one sandbox child and supervising it (deadline, cancellation, kill).
- `output`: the child's stdout/stderr into the run's log, capped.
- `sandbox`: the code that runs inside the child (standard library only): namespaces, private
  root, capabilities, rlimits, Landlock, seccomp, then the user's `main`.

The security model is described in `docs/pieces/code-python.md`.
"""

from pieces.code.piece import PythonCodeInput, PythonCodePiece, limits_for
from pieces.code.probe import SandboxSupport, forget_sandbox_support, sandbox_support

__all__ = [
    "PythonCodeInput",
    "PythonCodePiece",
    "SandboxSupport",
    "forget_sandbox_support",
    "limits_for",
    "sandbox_support",
]
