"""Validation of workflow definitions: schema, then semantics, all problems at once.

Main entry: `validate`.

Order of work: load (dict, JSON text or file) -> JSON Schema (`definitions/workflow.schema.json`)
-> semantic checks the schema cannot express: duplicate ids, edges naming unknown nodes, cycles,
unreachable nodes, unknown pieces and trigger types, piece inputs by each piece's own rule
(`Piece.parse_input`, the rule the engine applies once templates are evaluated), template syntax
and the names templates use (`params.x` against a closed `parameters` schema included), a `when`
or `filter` written as text around templates, the `parameters` schema itself (references,
defaults), and each trigger's own configuration (time zones, cron syntax, ...). Semantic checks
look only at the parts of the document that are well-formed, so one mistake does not hide the
others.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import jsonschema_rs
from jsonschema import Draft202012Validator
from pydantic import ValidationError as PydanticValidationError

from interpreter.definition import templates
from interpreter.definition.graph import Graph
from interpreter.definition.parameters import impossible_read, parameters_schema_problems
from interpreter.definition.problems import WHOLE_DOCUMENT, DefinitionFileError, Problem, pointer
from interpreter.definition.schema import (
    graph_validator,
    schema_problems,
    validator_for_schema,
    workflow_schema_problems,
)
from pieces.registry import PieceRegistry, UnknownPieceError, default_registry

Definition = dict[str, Any] | str | PathLike[str]
"""What `validate` and `run_workflow` accept: a dict, JSON text, or a path to a JSON file."""

Path_ = tuple[str | int, ...]

BASE_NAMES = frozenset({"params", "trigger", "nodes", "secrets", "run"})
MAP_NAMES = frozenset({"item", "index"})
TRIGGER_NAMES = frozenset({"trigger", "run"})
MAP_PIECE = "core.map"


_EXAMPLE = '{"format": 1, "id": "my-flow", "nodes": [...]}'


def load_definition(definition: Definition) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Read a definition from a dict, JSON text or a file path.

    A `str` is JSON text when it starts (after white space) with `{` or `[`, and a path
    otherwise; an empty (or blank) `str` is an empty definition, not a path.

    Returns:
        The document and no problems; or None and the problem at the whole document (`""`):
        empty, not JSON, not an object.

    Raises:
        DefinitionFileError: the file cannot be read (missing, a directory, not permitted).
        TypeError: `definition` is none of a dict, a `str` or an `os.PathLike`.
    """
    if isinstance(definition, dict):
        return definition, []
    if isinstance(definition, str) and not definition.strip():
        return None, [
            Problem(WHOLE_DOCUMENT, f"the definition is empty; give a JSON object: {_EXAMPLE}")
        ]
    if isinstance(definition, str) and definition.lstrip().startswith(("{", "[")):
        text, origin = definition, "the definition"
    elif isinstance(definition, str | PathLike):
        path = Path(definition)
        origin = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DefinitionFileError(origin, exc.strerror or str(exc), exc.errno) from None
        try:
            # JSON is UTF-8 (RFC 8259); a byte order mark, which some editors write, is ignored.
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return None, [
                Problem(
                    WHOLE_DOCUMENT,
                    f"{origin} is not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON",
                )
            ]
        if not text.strip():
            return None, [
                Problem(WHOLE_DOCUMENT, f"{origin} is empty; write a JSON object: {_EXAMPLE}")
            ]
    else:
        raise TypeError(
            "a workflow definition is a dict, JSON text (str) or a file path (str or "
            f"os.PathLike); got {type(definition).__name__}"
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [
            Problem(
                WHOLE_DOCUMENT,
                f"{origin} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            )
        ]
    if not isinstance(document, dict):
        return None, [
            Problem(
                WHOLE_DOCUMENT,
                f"a workflow definition must be a JSON object, got {_json_kind(document)}",
            )
        ]
    return document, []


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def validate(definition: Definition, *, registry: PieceRegistry | None = None) -> list[Problem]:
    """Every problem in a workflow definition; an empty list means it is valid.

    Args:
        definition: a dict, JSON text, or a path to a JSON file (see `load_definition`).
        registry: the pieces to check against (default: the pieces installed in this process).

    Returns:
        Problems sorted by their place in the document, each with a JSON Pointer (`path`) and a
        message that says how to fix it. An empty definition, text that is not JSON or JSON
        that is not an object is one problem at `""`, the whole document.

    Raises:
        DefinitionFileError: a path that cannot be read (an `OSError`: nothing to validate).
        TypeError: `definition` is not a dict, a `str` or an `os.PathLike`.

    Example:
        ```python
        for problem in validate("definitions/examples/chain.json"):
            print(problem.path, problem.message)
        ```
    """
    document, problems = load_definition(definition)
    if document is None:
        return problems
    return validate_document(document, registry=registry)


def validate_document(
    document: dict[str, Any], *, registry: PieceRegistry | None = None
) -> list[Problem]:
    """`validate` for an already-parsed document."""
    checker = _Checker(registry or default_registry())
    checker.problems.extend(workflow_schema_problems(document))
    checker.check_workflow(document)
    return _ordered(checker.problems)


def _ordered(problems: list[Problem]) -> list[Problem]:
    """Deduplicated, in document order (numeric array indexes, not string order)."""

    def key(problem: Problem) -> tuple[tuple[int, int | str], ...]:
        parts = problem.path.split("/")[1:]
        # isascii: "²" and "③" are digits to str.isdigit, not to int().
        return tuple((0, int(p)) if p.isascii() and p.isdigit() else (1, p) for p in parts)

    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=key)


@dataclass(frozen=True)
class _Scope:
    """What templates at one place may name."""

    names: frozenset[str]
    node_ref: Callable[[str], str | None]
    """Returns why a `nodes.<id>` reference is not allowed here, or None when it is."""


class _Checker:
    """Collects semantic problems; each `check_*` method looks only at well-formed parts."""

    def __init__(self, registry: PieceRegistry) -> None:
        self.registry = registry
        self.problems: list[Problem] = []
        self.parameters: dict[str, Any] | None = None
        """The workflow's `parameters` schema, once checked sound."""

    def add(self, path: Path_, message: str) -> None:
        self.problems.append(Problem(pointer(*path), message))

    def has_problem_under(self, path: Path_) -> bool:
        prefix = pointer(*path)
        return any(p.path == prefix or p.path.startswith(prefix + "/") for p in self.problems)

    # --- whole workflow ----------------------------------------------------------------------

    def check_workflow(self, document: dict[str, Any]) -> None:
        parameters = document.get("parameters")
        if isinstance(parameters, dict):
            found = parameters_schema_problems(parameters, ("parameters",))
            self.problems.extend(found)
            # Reads of `params.x` are judged only against a schema that is itself sound.
            self.parameters = None if found else parameters
        self.check_plan(document, (), extra_names=frozenset())
        triggers = document.get("triggers")
        if isinstance(triggers, list):
            self.check_triggers(triggers)

    def check_triggers(self, triggers: list[Any]) -> None:
        seen: dict[str, int] = {}
        for index, trigger in enumerate(triggers):
            if not isinstance(trigger, dict):
                continue
            path: Path_ = ("triggers", index)
            trigger_id = trigger.get("id")
            if isinstance(trigger_id, str):
                if trigger_id in seen:
                    self.add(
                        (*path, "id"),
                        f"duplicate trigger id {trigger_id!r} (also /triggers/{seen[trigger_id]})",
                    )
                seen.setdefault(trigger_id, index)
            scope = _Scope(TRIGGER_NAMES, lambda node_id: None)
            for field in ("parameters", "filter", "dedupe_key"):
                if field in trigger:
                    self.check_templates(trigger[field], (*path, field), scope)
            if isinstance(trigger.get("filter"), str):
                self.check_condition(trigger["filter"], (*path, "filter"), "filter")
            kind = trigger.get("type")
            if not isinstance(kind, str):
                continue
            try:
                piece = self.registry.trigger(kind)
            except UnknownPieceError as exc:
                self.add((*path, "type"), str(exc))
                continue
            if self.has_problem_under(path):
                continue  # the schema already said what is wrong with this trigger
            try:
                piece.parse_config(trigger)
            except PydanticValidationError as exc:
                for loc, message in _pydantic_errors(exc):
                    self.add((*path, *loc), message)

    # --- graphs ------------------------------------------------------------------------------

    def check_plan(self, plan: dict[str, Any], base: Path_, *, extra_names: frozenset[str]) -> None:
        """Check a workflow body or a `core.map` sub-graph at `base`."""
        raw_nodes = plan.get("nodes")
        raw_edges = plan.get("edges", [])
        nodes = _well_formed_nodes(raw_nodes)
        first_index: dict[str, int] = {}
        for index, node in nodes:
            node_id = node["id"]
            if node_id in first_index:
                self.add(
                    (*base, "nodes", index, "id"),
                    f"duplicate node id {node_id!r}: it is already used by "
                    f"{pointer(*base, 'nodes', first_index[node_id])}; node ids must be unique",
                )
            else:
                first_index[node_id] = index
        edges = list(_well_formed_edges(raw_edges))
        known = sorted(first_index)
        valid_edges: list[tuple[int, dict[str, Any]]] = []
        for index, edge in edges:
            ok = True
            for end in ("from", "to"):
                if isinstance(edge.get(end), str) and edge[end] not in first_index:
                    ok = False
                    self.add(
                        (*base, "edges", index, end),
                        f"edge names unknown node {edge[end]!r}; known nodes: {_listing(known)}",
                    )
            if ok and isinstance(edge.get("from"), str) and isinstance(edge.get("to"), str):
                valid_edges.append((index, edge))
        graph = Graph(list(first_index), [(e["from"], e["to"]) for _, e in valid_edges])
        cyclic = self.check_graph_shape(graph, valid_edges, first_index, base)
        valid_indexes = {index for index, _ in valid_edges}
        ends = [
            tuple(
                e[end] if isinstance(e.get(end), str) and e[end] in first_index else None
                for end in ("from", "to")
            )
            for index, e in edges
            if index not in valid_indexes
        ]
        ancestry = _Ancestry(
            graph,
            cyclic=cyclic,
            dangling_sources=frozenset(src for src, dst in ends if src and not dst),
            dangling_targets=frozenset(dst for src, dst in ends if dst and not src),
            fully_dangling=any(not src and not dst for src, dst in ends),
        )

        error_targets = {e["to"] for _, e in valid_edges if e.get("on") == "error"}
        names = BASE_NAMES | extra_names
        for index, node in nodes:
            node_names = names | ({"error"} if node["id"] in error_targets else set())
            scope = _Scope(frozenset(node_names), _ancestor_rule(ancestry, node["id"]))
            self.check_node(node, (*base, "nodes", index), scope)
        for index, edge in valid_edges:
            if isinstance(edge.get("when"), str):
                source = edge["from"]

                def edge_rule(ref: str, source: str = source) -> str | None:
                    if ref == source:
                        return None
                    return _ancestor_rule(ancestry, source)(ref)

                scope = _Scope(frozenset(names | {"output"}), edge_rule)
                self.check_templates(edge["when"], (*base, "edges", index, "when"), scope)
                self.check_condition(edge["when"], (*base, "edges", index, "when"), "when")
        if "output" in plan:

            def output_rule(ref: str) -> str | None:
                return None if ref in first_index else _unknown_node(ref, known)

            self.check_templates(plan["output"], (*base, "output"), _Scope(names, output_rule))

    def check_graph_shape(
        self,
        graph: Graph,
        edges: list[tuple[int, dict[str, Any]]],
        node_index: dict[str, int],
        base: Path_,
    ) -> bool:
        """Cycles (reported at the edge that closes each) and nodes no entry node reaches.

        Returns whether the graph has a cycle.
        """
        edge_index = {(e["from"], e["to"]): i for i, e in reversed(edges)}
        cycles = graph.cycles()
        for cycle in cycles:
            closing = edge_index[(cycle[-1], cycle[0])]
            loop = " -> ".join([*cycle, cycle[0]])
            self.add(
                (*base, "edges", closing),
                f"cycle: {loop}; a workflow must be acyclic (express loops with core.map)",
            )
        for node_id in graph.unreachable():
            self.add(
                (*base, "nodes", node_index[node_id]),
                f"node {node_id!r} cannot be reached: no node without incoming edges leads to it "
                "(it is only reachable from a cycle)",
            )
        return bool(cycles)

    # --- nodes and pieces --------------------------------------------------------------------

    def check_node(self, node: dict[str, Any], path: Path_, scope: _Scope) -> None:
        raw_input = node.get("input", {})
        if not isinstance(raw_input, dict):
            return
        self.check_piece_input(node.get("piece"), raw_input, (*path, "input"), scope, path)

    def check_piece_input(
        self,
        key: Any,
        raw_input: dict[str, Any],
        path: Path_,
        scope: _Scope,
        node_path: Path_,
    ) -> None:
        """Check a piece key and its input at `path` (the input object's pointer)."""
        if not isinstance(key, str):
            return
        key_path = (*node_path, "piece") if path[-1] == "input" else (*path[:-1], "piece")
        try:
            piece = self.registry.action(key)
        except UnknownPieceError as exc:
            if not self.has_problem_under(key_path):
                self.add(key_path, str(exc))
            self.check_templates(raw_input, path, scope)
            return
        deferred = piece.deferred_inputs
        own = {k: v for k, v in raw_input.items() if k not in deferred}
        templated = list(_template_paths(own))
        validators = _input_validators(key, self.registry)
        found = (
            []
            if validators.fast.is_valid(raw_input)
            else schema_problems(validators.full, raw_input, path, ignore=templated)
        )
        self.problems.extend(found)
        if not found and not templated and not _contains_template(own):
            try:
                piece.parse_input(raw_input)  # the rule the engine applies to rendered inputs
            except PydanticValidationError as exc:
                for loc, message in _pydantic_errors(exc):
                    self.add((*path, *loc), message)
        self.check_templates(own, path, scope)
        if key == MAP_PIECE:
            self.check_map(raw_input, path, scope)

    def check_map(self, raw_input: dict[str, Any], path: Path_, scope: _Scope) -> None:
        """`core.map`: the per-item piece input, or the per-item sub-graph."""
        inner_scope = _Scope(scope.names | MAP_NAMES, scope.node_ref)
        inner_input = raw_input.get("input", {})
        if isinstance(inner_input, dict):
            self.check_piece_input(
                raw_input.get("piece"), inner_input, (*path, "input"), inner_scope, path
            )
        workflow = raw_input.get("workflow")
        if isinstance(workflow, dict):
            sub_path = (*path, "workflow")
            self.problems.extend(schema_problems(graph_validator(), workflow, sub_path))
            self.check_plan(workflow, sub_path, extra_names=MAP_NAMES)

    # --- templates ---------------------------------------------------------------------------

    def check_templates(self, value: Any, path: Path_, scope: _Scope) -> None:
        """Syntax and names of every template inside `value`."""
        for sub_path, source in _template_strings(value, path):
            error = templates.syntax_error(source)
            if error is not None:
                self.add(sub_path, error)
                continue
            refs = templates.references(source)
            for name in sorted(refs.names - scope.names):
                self.add(
                    sub_path,
                    f"template uses unknown name {name!r}; available here: "
                    f"{', '.join(sorted(scope.names))}"
                    + (
                        " (`error` exists only in a node reached by an error edge)"
                        if name == "error"
                        else ""
                    )
                    + (" (`output` exists only in an edge's `when`)" if name == "output" else "")
                    + (
                        " (`item` and `index` exist only inside core.map)"
                        if name in MAP_NAMES
                        else ""
                    ),
                )
            if "params" in scope.names:
                self.check_params_reads(refs.params, sub_path)
            if "nodes" not in scope.names:
                continue  # already reported as an unknown name
            for ref in sorted(refs.nodes):
                reason = scope.node_ref(ref)
                if reason is not None:
                    self.add(sub_path, reason)

    def check_params_reads(self, reads: frozenset[tuple[str, ...]], path: Path_) -> None:
        """`params.x` (or `params.a.b`) that the parameters schema rules out."""
        if self.parameters is None or not reads:
            return
        found = [impossible_read(self.parameters, keys) for keys in sorted(reads)]
        for read in dict.fromkeys(f for f in found if f is not None):
            *parents, missing = read.keys
            prefix = ".".join(("params", *parents))
            owner = f"`{prefix}`" if parents else "the parameters schema"
            hint = difflib.get_close_matches(missing, read.declared, n=1)
            if hint:
                fix = f"did you mean `{prefix}.{hint[0]}`?"
            elif read.declared:
                fix = f"read one of {', '.join(read.declared)}, or declare `{missing}`"
            else:
                fix = f"declare `{missing}` under its `properties`"
            self.add(
                path,
                f"template reads `{prefix}.{missing}`, but {owner} has no property "
                f"`{missing}` and allows no others (additionalProperties: false); {fix}",
            )

    def check_condition(self, source: str, path: Path_, field: str) -> None:
        """A `when` (or `filter`) that renders text around its templates: (almost) always true."""
        if templates.syntax_error(source) is not None or not templates.renders_text_around(source):
            return
        rewrite = templates.as_one_expression(source)
        fix = (
            f"write it as one expression: {json.dumps(rewrite)}"
            if rewrite
            else 'write the whole condition inside one {{ }}, e.g. "{{ output.total > 100 '
            'and output.ok }}"'
        )
        self.add(
            path,
            f"`{field}` has text around its templates, so it renders to a string such as "
            '"True and False", which counts as true: it would almost always hold; ' + fix,
        )


def _unknown_node(ref: str, known: list[str]) -> str:
    return f"template names unknown node {ref!r}; known nodes: {_listing(known)}"


def _listing(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "") or "(none)"


def _well_formed_nodes(raw: Any) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(raw, list):
        return []
    return [
        (i, n) for i, n in enumerate(raw) if isinstance(n, dict) and isinstance(n.get("id"), str)
    ]


def _well_formed_edges(raw: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(raw, list):
        for index, edge in enumerate(raw):
            if isinstance(edge, dict):
                yield index, edge


def _template_strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        if templates.is_template(value):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _template_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _template_strings(item, (*path, index))


def _template_paths(value: Any, path: Path_ = ()) -> Iterator[Path_]:
    """Relative paths of values that are one whole template (their type is known at run time)."""
    for sub_path, source in _template_strings(value, path):
        if templates.whole_expression(source) is not None:
            yield sub_path


def _contains_template(value: Any) -> bool:
    return next(_template_strings(value, ()), None) is not None


@dataclass(frozen=True)
class _InputValidators:
    """A piece's input schema compiled twice: a fast accept check and the one that explains."""

    fast: Any
    full: Draft202012Validator


_input_validator_cache: WeakKeyDictionary[PieceRegistry, dict[str, _InputValidators]] = (
    WeakKeyDictionary()
)


def _input_validators(key: str, registry: PieceRegistry) -> _InputValidators:
    """The compiled validators of a piece's input schema, built once per registry."""
    cache = _input_validator_cache.setdefault(registry, {})
    found = cache.get(key)
    if found is None:
        schema = registry.action(key).input_schema()
        found = cache[key] = _InputValidators(
            fast=jsonschema_rs.validator_for(schema, validate_formats=True),
            full=validator_for_schema(schema),
        )
    return found


def _pydantic_errors(exc: PydanticValidationError) -> Iterator[tuple[Path_, str]]:
    for error in exc.errors(include_url=False):
        loc = tuple(part for part in error["loc"] if isinstance(part, str | int))
        message = error["msg"].removeprefix("Value error, ")
        yield loc, message


@dataclass(frozen=True)
class _Ancestry:
    """Whether a node's template may read `nodes.<ref>`, even on a broken graph.

    On a sound graph that is plain ancestry. A cycle or an edge naming an unknown node is the
    graph's mistake, not the template's: a reference is then reported only when no repair of
    those edges (dropping an edge of the cycle, naming an existing node) could make it upstream.
    """

    graph: Graph
    cyclic: bool
    dangling_sources: frozenset[str]  # known sources of edges whose target is unknown
    dangling_targets: frozenset[str]  # known targets of edges whose source is unknown
    fully_dangling: bool  # an edge with neither end known: any repair is possible

    def certainly_not_upstream(self, ref: str, node_id: str) -> bool:
        if self.fully_dangling:
            return False
        if not (self.cyclic or self.dangling_sources or self.dangling_targets):
            return not self.graph.is_ancestor(ref, node_id)
        upstream = self.graph.upstream_of(node_id)
        if ref in upstream:
            return False
        # Repaired, an edge from S could lead to this node: S and its ancestors may be read.
        if any(ref == s or ref in self.graph.upstream_of(s) for s in self.dangling_sources):
            return False
        # Repaired, an edge into T could come from anywhere: so could this node's ancestry.
        return not any(t == node_id or t in upstream for t in self.dangling_targets)


def _ancestor_rule(ancestry: _Ancestry, node_id: str) -> Callable[[str], str | None]:
    """Why `node_id` may not read `nodes.<ref>`: unknown, itself, or not upstream."""
    graph = ancestry.graph

    def rule(ref: str) -> str | None:
        if ref not in graph.successors:
            return _unknown_node(ref, list(graph.node_ids))
        if ref == node_id:
            return f"node {node_id!r} cannot read its own output"
        if ancestry.certainly_not_upstream(ref, node_id):
            return (
                f"node {ref!r} is not upstream of {node_id!r}: a template can read only the "
                f"outputs of nodes that finish before it (add edges leading from {ref!r} "
                f"to {node_id!r})"
            )
        return None

    return rule
