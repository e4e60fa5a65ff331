"""docs/api.md stays true: every example in it runs, in order, with the real `curl`.

The guide marks each example with an HTML comment right before its ```sh block:

    <!-- example: OPERATION expect: STATUS [capture: NAME=path ...] [check: path=VALUE ...] -->

and shows the answer in the ```http block right after it (status line, chosen headers, a trimmed
body). The test runs each block with `bash -u -c` and the guide's variables (`API`, `ADMIN`,
`TENANT`, and whatever earlier examples captured), and checks, for every example:

- the status is `expect`, and the answer block shows that status;
- the headers the answer block shows are in the real answer, with those values;
- every field name the answer block shows occurs in the real JSON answer, and a problem's
  `type` is the one shown;
- `check:` values hold (`path=$NAME` compares with a captured variable);
- the method and path the command calls are OPERATION's in docs/openapi.json.

`capture: NAME=path` sets `$NAME` for the next examples from the JSON answer (`id`,
`data.0.id`). Every operation of docs/openapi.json needs an example, so a route added without
one fails here. No worker is needed: the run the guide pauses, resumes and cancels is scheduled
for years ahead, so its answers are the same whether or not a worker serves the pool.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import LiveService
from tests.support.api import unique

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "api.md"
OPENAPI = ROOT / "docs" / "openapi.json"

_MARKER = re.compile(r"<!--\s*example:(?P<spec>.*?)-->", re.S)
_FENCE = re.compile(r"\s*```(?P<lang>[\w-]*)\n(?P<text>.*?)\n```[ \t]*(?:\n|\Z)", re.S)
_SH_BLOCK = re.compile(r"^```sh\n(?P<text>.*?)\n```", re.S | re.M)
_STATUS_LINE = re.compile(r"^HTTP/[\d.]+ (?P<status>\d{3})\b")
_FIELD_NAME = re.compile(r'"(?P<name>[A-Za-z_$][\w$-]*)"\s*:')
_PROBLEM_TYPE = re.compile(r'"type"\s*:\s*"(?P<type>/problems/[^"]+)"')
_URL = re.compile(r"\$\{?API\}?(?P<path>/[^\s\"'?]*)")
_METHOD = re.compile(r"(?:-X|--request)\s+(?P<method>[A-Z]+)")
_SENDS_BODY = re.compile(r"(?:^|\s)(?:-d|--data(?:-binary|-raw)?|--json|-F|--form)(?:\s|=|$)")
_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")

# The variables a reader sets by hand before the first example; every other one is captured.
READER_VARIABLES = ("API", "ADMIN", "TENANT")


@dataclass
class Answer:
    """An HTTP answer: as curl printed it (`-i`), or as the guide shows it."""

    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


@dataclass
class Example:
    """One marked example of the guide."""

    line: int
    operation: str
    expect: int
    script: str
    shown: Answer
    captures: dict[str, str] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"docs/api.md:{self.line} ({self.operation}, expect {self.expect})"


def parse_answer(text: str) -> Answer:
    """A status line, header lines, a blank line, a body; 1xx interim answers are skipped."""
    rest = text.replace("\r\n", "\n")
    while True:
        head, _, body = rest.partition("\n\n")
        lines = head.split("\n")
        matched = _STATUS_LINE.match(lines[0])
        assert matched, f"not an HTTP answer: {text[:200]!r}"
        status = int(matched["status"])
        if 100 <= status < 200 and body.startswith("HTTP/"):
            rest = body
            continue
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            assert colon, f"not a header line: {line!r}"
            headers[name.strip().lower()] = value.strip()
        return Answer(status, headers, body.strip("\n"))


def _options(spec: str, line: int) -> tuple[str, int, dict[str, str], dict[str, str]]:
    """`OPERATION expect: STATUS capture: A=x B=y check: p=v` of a marker."""
    words = spec.split()
    bad = f"docs/api.md:{line}: bad marker {spec!r}"
    assert len(words) >= 3, bad
    assert words[1] == "expect:", bad
    operation, status = words[0], words[2]
    assert status.isdigit(), f"docs/api.md:{line}: bad status {status!r}"
    sections: dict[str, dict[str, str]] = {"capture:": {}, "check:": {}}
    current: dict[str, str] | None = None
    for word in words[3:]:
        if word in sections:
            current = sections[word]
            continue
        name, equals, value = word.partition("=")
        assert current is not None, f"docs/api.md:{line}: {word!r} before capture:/check:"
        assert equals, f"docs/api.md:{line}: {word!r} is not NAME=VALUE"
        current[name] = value
    for name in sections["capture:"]:
        assert _VARIABLE.match(name), f"docs/api.md:{line}: capture into {name!r}"
    return operation, int(status), sections["capture:"], sections["check:"]


def guide_examples(text: str) -> list[Example]:
    """The guide's examples, in order; each marker must be followed by ```sh then ```http."""
    examples: list[Example] = []
    for marker in _MARKER.finditer(text):
        line = text.count("\n", 0, marker.start()) + 1
        operation, expect, captures, checks = _options(marker["spec"], line)
        script = _FENCE.match(text, marker.end())
        assert script is not None, f"docs/api.md:{line}: no ```sh block follows"
        assert script["lang"] == "sh", f"docs/api.md:{line}: a ```{script['lang']} block follows"
        shown = _FENCE.match(text, script.end())
        assert shown is not None, f"docs/api.md:{line}: no ```http answer follows"
        assert shown["lang"] == "http", f"docs/api.md:{line}: the answer must be ```http"
        examples.append(
            Example(
                line=line,
                operation=operation,
                expect=expect,
                script=script["text"],
                shown=parse_answer(shown["text"]),
                captures=captures,
                checks=checks,
            )
        )
    return examples


def openapi_operations() -> dict[str, tuple[str, str]]:
    """Every operation id of docs/openapi.json: its method and path template."""
    document = json.loads(OPENAPI.read_text())
    found: dict[str, tuple[str, str]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            found[operation["operationId"]] = (method.upper(), path)
    return found


def called_operation(script: str, operations: dict[str, tuple[str, str]]) -> str | None:
    """The operation a curl command calls: its method and `$API/...` path against the spec's
    templates (a `$VARIABLE` fills a `{parameter}`); a literal segment wins over a template."""
    url = _URL.search(script)
    if url is None:
        return None
    method_found = _METHOD.search(script)
    method = (
        method_found["method"] if method_found else "POST" if _SENDS_BODY.search(script) else "GET"
    )
    path = url["path"]
    candidates: list[tuple[int, str]] = []
    for operation_id, (operation_method, template) in operations.items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if operation_method == method and re.match(pattern, path):
            candidates.append((template.count("{"), operation_id))
    return min(candidates)[1] if candidates else None


def field_names(value: Any) -> set[str]:
    """Every object key anywhere in a JSON value."""
    if isinstance(value, dict):
        names = set(value)
        for item in value.values():
            names |= field_names(item)
        return names
    if isinstance(value, list):
        return set().union(*(field_names(item) for item in value)) if value else set()
    return set()


def lookup(value: Any, path: str) -> Any:
    """`id`, `data.0.id`: a key or list index at each step."""
    for step in path.split("."):
        value = value[int(step)] if isinstance(value, list) else value[step]
    return value


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --- the guide itself ----------------------------------------------------------------------


def test_every_operation_has_an_example_and_every_example_is_its_operation() -> None:
    text = GUIDE.read_text()
    examples = guide_examples(text)
    operations = openapi_operations()
    assert examples, "docs/api.md has no marked examples"
    unknown = sorted({e.operation for e in examples} - operations.keys())
    assert not unknown, f"docs/api.md names operations docs/openapi.json lacks: {unknown}"
    missing = sorted(operations.keys() - {e.operation for e in examples})
    assert not missing, f"operations of docs/openapi.json without an example: {missing}"
    for example in examples:
        assert example.script.count("curl ") == 1, f"{example}: one curl command per example"
        assert re.search(r"\bcurl -si\b", example.script), f"{example}: use `curl -si`"
        assert called_operation(example.script, operations) == example.operation, (
            f"{example}: the command calls {called_operation(example.script, operations)}"
        )
        assert example.shown.status == example.expect, f"{example}: the answer shows another"
    # A curl command without a marker would not be run (nor checked).
    marked = {e.script for e in examples}
    for block in _SH_BLOCK.finditer(text):
        if "curl " in block["text"]:
            assert block["text"] in marked, f"an unmarked curl example: {block['text'][:80]!r}"


def test_the_examples_only_use_variables_set_before_them() -> None:
    known = set(READER_VARIABLES)
    for example in guide_examples(GUIDE.read_text()):
        used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)\}?", example.script))
        assert used <= known, f"{example} uses {sorted(used - known)} before they are set"
        known |= example.captures.keys()


# --- running it -----------------------------------------------------------------------------


def run_example(example: Example, variables: dict[str, str], home: Path) -> Answer:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # no ~/.curlrc of the machine's user
        "CURL_HOME": str(home),
        "LC_ALL": "C.UTF-8",
        **variables,
    }
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-u", "-c", example.script],
        env=environment,
        cwd=home,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{example} failed ({done.returncode}): {done.stderr!r}"
    return parse_answer(done.stdout.decode("utf-8"))


def check_answer(example: Example, actual: Answer, variables: dict[str, str]) -> None:
    assert actual.status == example.expect, (
        f"{example} answered {actual.status}: {actual.body[:500]}"
    )
    for name, value in example.shown.headers.items():
        assert actual.headers.get(name) == value, (
            f"{example}: header {name} is {actual.headers.get(name)!r}, the guide shows {value!r}"
        )
    shown_names = {m["name"] for m in _FIELD_NAME.finditer(example.shown.body)}
    if not shown_names and not example.shown.body.strip():
        assert not actual.body.strip(), f"{example}: the guide shows no body; got {actual.body!r}"
        return
    body = actual.json()
    absent = shown_names - field_names(body)
    assert not absent, f"{example}: the guide shows fields the answer lacks: {sorted(absent)}"
    shown_type = _PROBLEM_TYPE.search(example.shown.body)
    if shown_type:
        assert body["type"] == shown_type["type"], f"{example}: the answer is {body}"
    for path, expected in example.checks.items():
        wanted = variables[expected[1:]] if expected.startswith("$") else expected
        assert as_text(lookup(body, path)) == wanted, f"{example}: {path} in {body}"


def test_every_example_of_the_api_guide_runs(live_service: LiveService, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the `curl` binary is not installed; the guide's examples are curl commands")
    examples = guide_examples(GUIDE.read_text())
    variables = {
        "API": live_service.url,
        "ADMIN": str(live_service.settings.admin_key),
        "TENANT": unique("guide"),  # the guide creates it with the operator key
    }
    timings: list[tuple[float, Example]] = []
    for example in examples:
        started = time.monotonic()
        actual = run_example(example, variables, tmp_path)
        timings.append((time.monotonic() - started, example))
        check_answer(example, actual, variables)
        for name, path in example.captures.items():
            variables[name] = as_text(lookup(actual.json(), path))
    slowest = max(timings, key=lambda pair: pair[0])
    print(f"{len(examples)} examples in {sum(t for t, _ in timings):.1f} s; slowest {slowest[1]}")
