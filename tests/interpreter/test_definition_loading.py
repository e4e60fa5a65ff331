"""Reading a definition: what `validate` accepts, the whole-document pointer, unreadable files.

The whole document's pointer is `""` everywhere data is returned; text output shows it as
`(document)`, since `/` is the pointer of a member named `""`. A file that cannot be read is an
`OSError` (`DefinitionFileError`), not an invalid definition.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from interpreter import DefinitionError, Problem, validate
from interpreter.cli import cmd_run, cmd_validate
from interpreter.definition.problems import DefinitionFileError

VALID = {
    "format": 1,
    "id": "wf",
    "nodes": [{"id": "a", "piece": "core.delay", "input": {"seconds": 0}}],
}


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_an_empty_definition_says_it_is_empty(text: str) -> None:
    [problem] = validate(text)
    assert problem.path == ""
    assert problem.message.startswith("the definition is empty")


def test_an_empty_file_says_it_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("\n")
    [problem] = validate(empty)
    assert problem == Problem("", problem.message)
    assert problem.message.startswith(f"{empty} is empty")


@pytest.mark.parametrize("value", [42, b"{}", None, ["format"]])
def test_other_types_are_a_type_error_that_says_what_is_accepted(value: object) -> None:
    with pytest.raises(TypeError, match=r"a dict, JSON text \(str\) or a file path"):
        validate(value)  # type: ignore[arg-type]


def test_a_missing_file_is_not_an_invalid_definition(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(DefinitionFileError) as caught:
        validate(missing)
    assert isinstance(caught.value, OSError)
    assert not isinstance(caught.value, DefinitionError)
    assert str(caught.value) == f"cannot read {missing}: No such file or directory"
    assert caught.value.filename == str(missing)
    with pytest.raises(DefinitionFileError, match="Is a directory"):
        validate(str(tmp_path))


def test_json_that_is_not_an_object_names_what_it_is(tmp_path: Path) -> None:
    assert validate("[1, 2]") == [
        Problem("", "a workflow definition must be a JSON object, got an array")
    ]
    not_utf8 = tmp_path / "latin1.json"
    not_utf8.write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    assert "is not UTF-8 text" in validate(not_utf8)[0].message
    with_bom = tmp_path / "bom.json"
    with_bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(VALID).encode())
    assert validate(with_bom) == []


def test_the_whole_document_is_shown_unambiguously_in_text() -> None:
    whole = Problem("", "not JSON")
    member = Problem("/", "a member named ''")  # RFC 6901: "/" is the member "" of the root
    assert str(whole) == "(document): not JSON"
    assert str(member) == "/: a member named ''"
    assert "  (document): not JSON" in str(DefinitionError([whole]))


def validate_args(*files: str, fmt: str = "text") -> argparse.Namespace:
    return argparse.Namespace(files=list(files), format=fmt)


def test_cli_validate_pointers_agree_between_text_and_json(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({**VALID, "": 1}))  # an unknown member named ""
    out = io.StringIO()
    assert cmd_validate(validate_args(str(broken), str(odd)), out) == 1
    text = out.getvalue().splitlines()
    assert text[0].startswith(f"{broken}: (document): {broken} is not valid JSON")
    assert text[1].startswith(f"{odd}: /: unknown field ``")
    out = io.StringIO()
    assert cmd_validate(validate_args(str(broken), str(odd), fmt="json"), out) == 1
    rows = json.loads(out.getvalue())
    assert [row["path"] for row in rows] == ["", "/"]


def test_cli_validate_reports_an_unreadable_file_and_checks_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(VALID))
    missing = tmp_path / "nope.json"
    out = io.StringIO()
    assert cmd_validate(validate_args(str(missing), str(good)), out) == 2
    assert capsys.readouterr().err == (
        f"altlas-flows validate: cannot read {missing}: No such file or directory\n"
    )
    assert out.getvalue() == f"{good}: valid\n"


def run_args(file: str, tenant: str = "default") -> argparse.Namespace:
    return argparse.Namespace(file=file, param=[], params_json=None, secret=[], tenant=tenant)


def test_cli_run_names_a_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert cmd_run(run_args("nope.json"), out) == 2
    captured = capsys.readouterr()
    assert captured.err == "altlas-flows run: cannot read nope.json: No such file or directory\n"
    assert "invalid workflow definition" not in captured.err
    assert out.getvalue() == ""


def test_cli_run_of_an_empty_file_says_it_is_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert cmd_run(run_args(str(empty))) == 2
    assert f"(document): {empty} is empty" in capsys.readouterr().err


@pytest.mark.parametrize("tenant", ["Acme_Corp", "acme corp", "", "-acme", "a" * 64])
def test_cli_run_refuses_a_tenant_outside_the_pattern(
    tenant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = tmp_path / "wf.json"
    definition.write_text(json.dumps(VALID))
    assert cmd_run(run_args(str(definition), tenant=tenant)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"altlas-flows run: --tenant {tenant!r} is not a valid tenant id")
    assert "^[a-z][a-z0-9-]{0,62}$" in err
