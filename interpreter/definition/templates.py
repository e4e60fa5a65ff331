"""Templates: sandboxed Jinja2 evaluation of `{{ ... }}` in definition values. Main entry: `render`.

Rules (from the definition format):
- a string that is exactly one `{{ expression }}` keeps the native type of its result (a list stays
  a list); any other string containing template syntax renders to a string;
- evaluation is sandboxed: no access to Python internals (underscored attributes, functions'
  globals, ...), no imports, data structures are immutable, and output is bounded: a single
  operation that would build a string or list longer than the configured limit is refused;
- an undefined name or attribute is an error (`StrictUndefined`), not an empty string; only
  `x if condition` without `else` is null when the condition is false (empty inside text).

Each distinct template source is parsed once per process (`compile_template` is cached), so a
1,000-node workflow does not pay for parsing 1,000 times per run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from interpreter.settings import get_engine_settings
from pieces.base import PieceError

_MARKERS = ("{{", "{%", "{#")
_WHOLE = re.compile(r"\{\{(?P<expr>.*)\}\}", re.DOTALL)
_PERCENT_WIDTH = re.compile(r"%[-+ #0]*(\d+)")
_BRACE_WIDTH = re.compile(r"\{[^{}]*:[^{}]*?(\d{4,})[^{}]*\}")


class TemplateEvaluationError(PieceError):
    """A template failed at run time (undefined name, type error, refused operation)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_type="TemplateError", retryable=False)


def is_template(value: Any) -> bool:
    """Whether `value` is a string containing template syntax."""
    return isinstance(value, str) and any(marker in value for marker in _MARKERS)


def whole_expression(value: str) -> str | None:
    """The expression of a string that is exactly one `{{ expression }}`, else None (text
    around it, even a space, makes the string a rendered text)."""
    match = _WHOLE.fullmatch(value)
    if match is None:
        return None
    expr = match.group("expr")
    if any(marker in expr for marker in ("{{", "}}", "{%", "%}")):
        return None
    return expr


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles `a ~ b` to a size-checked join (Jinja's own `str_join` cannot be intercepted)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_join((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, plus size checks on the operations that can multiply data, and JSON-first
    attribute look-up: `item.items` is the key "items" when there is one, not `dict.items`."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, max_chars: int) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.max_chars = max_chars
        self.filters["fromjson"] = json.loads
        self.filters["tojson"] = _tojson
        for name in ("center", "indent", "wordwrap", "format", "replace", "join"):
            self.filters[name] = self._bounded(self.filters[name])

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def bounded_join(self, parts: tuple[Any, ...]) -> str:
        """`a ~ b ~ c`, refused when the result would be too long."""
        texts = [str(part) for part in parts]
        self._check_size(sum(len(text) for text in texts), "'~'")
        return "".join(texts)

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_chars:
            raise SecurityError(
                f"{what} would produce {size:,} items or characters; the limit is "
                f"{self.max_chars:,} (ALTLAS_TEMPLATE_MAX_OUTPUT_CHARS)"
            )

    def _bounded(self, func: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._check_args(args, kwargs, getattr(func, "__name__", "filter"))
            result = func(*args, **kwargs)
            if isinstance(result, str | list | tuple):
                self._check_size(len(result), getattr(func, "__name__", "filter"))
            return result

        guarded.__dict__.update(getattr(func, "__dict__", {}))  # keep jinja's pass_* markers
        return guarded

    def _check_args(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], what: str) -> None:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool):
                self._check_size(abs(value), what)
            elif isinstance(value, str):
                for width in (*_PERCENT_WIDTH.findall(value), *_BRACE_WIDTH.findall(value)):
                    self._check_size(int(width), what)
        sized = [len(v) for v in args if isinstance(v, str | list | tuple)]
        if what == "replace" and len(args) >= 3 and all(isinstance(a, str) for a in args[:3]):
            text, old, new = args[0], args[1], args[2]
            count = text.count(old) if old else len(text) + 1
            self._check_size(len(text) + count * max(0, len(new) - len(old)), what)
        elif what in ("join", "format") and sized:
            self._check_size(sum(sized), what)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > 1000:
                raise SecurityError("exponent too large in template (limit 1000)")
        elif operator_name == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    self._check_size(len(seq) * times, "'*'")
        elif operator_name == "%" and isinstance(left, str):
            self._check_args((left,), {}, "'%'")
        elif operator_name == "+" and _sized(left) and _sized(right):
            self._check_size(len(left) + len(right), "'+'")
        return super().call_binop(context, operator_name, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "call")
        __self._check_args(args, kwargs, name)
        if name in ("join", "replace", "format") and isinstance(
            getattr(__obj, "__self__", None), str
        ):
            __self._check_args((__obj.__self__, *args), kwargs, name)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str | list | tuple):
            __self._check_size(len(result), name)
        return result


def _sized(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


@lru_cache(maxsize=1)
def _environment() -> _BoundedEnvironment:
    return _BoundedEnvironment(get_engine_settings().template_max_output_chars)


_PATH = re.compile(
    r"""\s*([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*|\[\s*(?:'[^'\\]*'|"[^"\\]*"|\d+)\s*\])*)\s*"""
)
_SEGMENT = re.compile(r"""\.([A-Za-z_]\w*)|\[\s*(?:'([^'\\]*)'|"([^"\\]*)"|(\d+))\s*\]""")
_BLOCK = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


@dataclass(frozen=True)
class _Path:
    """A plain look-up such as `nodes.fetch.output.rows[0]['id']`: no calls, filters or maths."""

    root: str
    keys: tuple[str | int, ...]


class _Miss(Exception):
    """The fast path does not apply; evaluate with Jinja instead (same result, or its error)."""


def _path(expression: str) -> _Path | None:
    match = _PATH.fullmatch(expression)
    if match is None or match.group(1) in ("true", "false", "none", "True", "False", "None"):
        return None
    keys: list[str | int] = []
    for attr, single, double, index in _SEGMENT.findall(match.group(2)):
        keys.append(int(index) if index else attr or single or double)
    return _Path(match.group(1), tuple(keys))


def _simple(source: str) -> _Path | tuple[str | _Path, ...] | None:
    """`source` as plain look-ups (one whole one, or text around them), or None if it is more."""
    if "{%" in source or "{#" in source:
        return None
    whole = whole_expression(source)
    if whole is not None:
        return _path(whole)
    parts: list[str | _Path] = []
    position = 0
    for block in _BLOCK.finditer(source):
        literal = source[position : block.start()]
        path = _path(block.group(1))
        if path is None or "{{" in literal or "}}" in literal:
            return None
        parts += [literal, path]
        position = block.end()
    tail = source[position:]
    return None if "{{" in tail or "}}" in tail else (*parts, tail)


def _look_up(path: _Path, scope: Mapping[str, Any]) -> Any:
    """The value at `path`, when every step is a JSON key or list index; else `_Miss`."""
    if path.root not in scope:
        raise _Miss
    value = scope[path.root]
    for key in path.keys:
        is_key = isinstance(key, str) and isinstance(value, Mapping) and key in value
        is_index = isinstance(key, int) and isinstance(value, list) and key < len(value)
        if is_key or is_index:
            value = value[key]
        else:
            raise _Miss
    return value


def _fast(
    simple: _Path | tuple[str | _Path, ...], slow: Callable[[Mapping[str, Any]], Any]
) -> Callable[[Mapping[str, Any]], Any]:
    """An evaluator for plain look-ups that defers to Jinja (`slow`) whenever a step misses."""
    env = _environment()
    if isinstance(simple, _Path):

        def evaluate_path(scope: Mapping[str, Any]) -> Any:
            try:
                value = _look_up(simple, scope)
            except _Miss:
                return slow(scope)
            if isinstance(value, str | list | tuple):
                env._check_size(len(value), "template result")
            return value

        return evaluate_path

    def evaluate_text(scope: Mapping[str, Any]) -> Any:
        try:
            text = "".join(
                part if isinstance(part, str) else str(_look_up(part, scope)) for part in simple
            )
        except _Miss:
            return slow(scope)
        env._check_size(len(text), "template output")
        return text

    return evaluate_text


@dataclass(frozen=True)
class CompiledTemplate:
    """A parsed template: either one native-typed expression or a text template."""

    source: str
    evaluate: Callable[[Mapping[str, Any]], Any]


@lru_cache(maxsize=65536)
def compile_template(source: str) -> CompiledTemplate:
    """Parse `source` once; raises `jinja2.TemplateSyntaxError` on bad syntax.

    Plain look-ups (`{{ nodes.fetch.output.body }}`, `Hello {{ params.name }}`) are evaluated
    directly; Jinja compiles the template only for anything else, or when a look-up misses (so
    errors and edge cases are exactly Jinja's).
    """
    simple = _simple(source)
    if simple is None:
        return CompiledTemplate(source, _jinja_evaluator(source))
    slow: list[Callable[[Mapping[str, Any]], Any]] = []

    def jinja(scope: Mapping[str, Any]) -> Any:
        if not slow:
            slow.append(_jinja_evaluator(source))
        return slow[0](scope)

    return CompiledTemplate(source, _fast(simple, jinja))


def _jinja_evaluator(source: str) -> Callable[[Mapping[str, Any]], Any]:
    env = _environment()
    expr = whole_expression(source)
    if expr is not None:
        expression = env.compile_expression(expr, undefined_to_none=False)

        def evaluate_expression(scope: Mapping[str, Any]) -> Any:
            result = expression(**scope)
            if isinstance(result, Undefined):
                if not isinstance(result, StrictUndefined):
                    return None  # `x if condition` without `else`: Jinja's lenient undefined
                result._fail_with_undefined_error()
            if isinstance(result, str | list | tuple):
                env._check_size(len(result), "template result")
            return result

        return evaluate_expression
    template = env.from_string(source)

    def evaluate_text(scope: Mapping[str, Any]) -> Any:
        # Streamed, so a loop is stopped as soon as its output passes the limit.
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(scope):
            size += len(chunk)
            env._check_size(size, "template output")
            chunks.append(chunk)
        return "".join(chunks)

    return evaluate_text


def render_string(source: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate one string; non-template strings come back unchanged."""
    if not is_template(source):
        return source
    try:
        return compile_template(source).evaluate(scope)
    except PieceError:
        raise
    except UndefinedError as exc:
        raise TemplateEvaluationError(f"{exc} in template {_excerpt(source)}") from None
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateEvaluationError(
            f"{type(exc).__name__}: {exc} in template {_excerpt(source)}"
        ) from None


def render(value: Any, scope: Mapping[str, Any], *, skip: frozenset[str] = frozenset()) -> Any:
    """Evaluate every template inside a JSON value (dicts and lists are walked).

    Args:
        value: the JSON value (a node's `input`, a trigger's `parameters`, the `output`, ...).
        scope: the names templates may use (`params`, `nodes`, `trigger`, ...).
        skip: top-level keys of a dict `value` left as they are (a piece's deferred inputs).
    """
    if isinstance(value, str):
        return render_string(value, scope)
    if isinstance(value, dict):
        return {key: item if key in skip else render(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, scope) for item in value]
    return value


def truthy(value: Any) -> bool:
    """How an edge's `when` result decides: Python truthiness, but the strings `"false"`,
    `"False"`, `"0"`, `""` and `"none"` are false too (a mixed-text `when` renders to a string)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "none", "null")
    return bool(value)


@lru_cache(maxsize=65536)
def syntax_error(source: str) -> str | None:
    """A message describing the syntax error in `source`, or None when it parses."""
    if _simple(source) is not None:
        return None
    try:
        _parse(source)
    except TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message} (line {exc.lineno})"
    return None


def _parse(source: str) -> nodes.Template:
    expr = whole_expression(source)
    return _environment().parse("{{" + expr + "}}" if expr is not None else source)


@dataclass(frozen=True)
class References:
    """What a template refers to, found statically for the validator."""

    names: frozenset[str]
    """Top-level names used (`params`, `nodes`, ...), minus those the template defines itself."""
    nodes: frozenset[str]
    """Node ids used as `nodes.ID` or `nodes['ID']`."""
    secrets: frozenset[str]
    """Secret names used as `secrets.NAME` or `secrets['NAME']`."""
    dynamic_nodes: bool
    """`nodes` is also used in a way that cannot be checked statically (e.g. `nodes[var]`)."""
    params: frozenset[tuple[str, ...]] = frozenset()
    """Keys read under `params`, from the root, as far as they are literal names:
    `params.a.b` and `params['a']['b']` give `("a", "b")` (and its prefix `("a",)`);
    `params.a[i]` gives `("a",)`; a method call such as `params.get('x')` gives nothing."""


@lru_cache(maxsize=65536)
def references(source: str) -> References:
    """The names a (syntactically valid) template refers to."""
    simple = _simple(source)
    if simple is not None:
        return _path_references([simple] if isinstance(simple, _Path) else simple)
    ast = _parse(source)
    if "{%" in source:  # statements may define local names
        used = frozenset(meta.find_undeclared_variables(ast))
    else:
        used = frozenset(n.name for n in ast.find_all(nodes.Name) if n.ctx == "load")
    static = {"nodes": set[str](), "secrets": set[str]()}
    static_uses = {"nodes": 0, "secrets": 0}
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if not isinstance(node, nodes.Getattr | nodes.Getitem):
            continue
        target = node.node
        if isinstance(target, nodes.Name) and target.name in static:
            key = _static_key(node)
            if key is not None:
                static[target.name].add(key)
                static_uses[target.name] += 1
    total_nodes_uses = sum(
        1 for n in ast.find_all(nodes.Name) if n.name == "nodes" and n.ctx == "load"
    )
    return References(
        names=used,
        nodes=frozenset(static["nodes"]),
        secrets=frozenset(static["secrets"]),
        dynamic_nodes="nodes" in used and total_nodes_uses > static_uses["nodes"],
        params=_static_chains(ast, "params") if "params" in used else frozenset(),
    )


def _static_chains(ast: nodes.Template, root: str) -> frozenset[tuple[str, ...]]:
    """Every look-up chain under the name `root`, cut at its first key that is not a literal
    string; the last key of a method call's callee (`params.get(...)`) is not a key."""
    callees = {id(call.node) for call in ast.find_all(nodes.Call)}
    chains: set[tuple[str, ...]] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        steps: list[nodes.Getattr | nodes.Getitem] = []
        current: nodes.Node = node
        while isinstance(current, nodes.Getattr | nodes.Getitem):
            steps.append(current)
            current = current.node
        if not (isinstance(current, nodes.Name) and current.name == root):
            continue
        keys: list[str] = []
        for step in reversed(steps):
            key = _static_key(step)
            if key is None:
                break
            keys.append(key)
        else:
            if id(node) in callees:
                keys.pop()
        if keys:
            chains.add(tuple(keys))
    return frozenset(chains)


def _path_references(parts: Sequence[str | _Path]) -> References:
    paths = [part for part in parts if isinstance(part, _Path)]
    found: dict[str, set[str]] = {"nodes": set(), "secrets": set()}
    params: set[tuple[str, ...]] = set()
    dynamic = False
    for path in paths:
        if path.root in found:
            if path.keys and isinstance(path.keys[0], str):
                found[path.root].add(path.keys[0])
            elif path.root == "nodes":
                dynamic = True
        elif path.root == "params":
            keys: list[str] = []
            for key in path.keys:
                if not isinstance(key, str):
                    break
                keys.append(key)
            params.update(tuple(keys[:n]) for n in range(1, len(keys) + 1))
    return References(
        names=frozenset(path.root for path in paths),
        nodes=frozenset(found["nodes"]),
        secrets=frozenset(found["secrets"]),
        dynamic_nodes=dynamic,
        params=frozenset(params),
    )


@lru_cache(maxsize=4096)
def renders_text_around(source: str) -> bool:
    """Whether a (syntactically valid) template always renders as text built from several
    parts: literal text beside a `{{ }}`, or several `{{ }}`, outside any `{% %}` block.

    Such a string is never one native value: as a condition (`when`, `filter`) it is a
    non-empty string such as "True and False", which counts as true.
    """
    if whole_expression(source) is not None or not is_template(source):
        return False
    parts = 0
    for statement in _parse(source).body:
        if not isinstance(statement, nodes.Output):
            return False  # `{% if %}` and friends decide what is rendered: not judged here
        for child in statement.nodes:
            if not isinstance(child, nodes.TemplateData) or child.data.strip():
                parts += 1
    return parts >= 2


def as_one_expression(source: str) -> str | None:
    """`source` with its `{{ }}` markers dropped, as one `{{ expression }}`, when that parses:
    `"{{ a }} and {{ b }}"` gives `"{{ a and b }}"`; `"x {{ a }}"` gives None."""
    if "{%" in source or "{#" in source:
        return None
    expression = " ".join(_BLOCK.sub(lambda block: f" {block.group(1)} ", source).split())
    candidate = "{{ " + expression + " }}"
    if not expression or whole_expression(candidate) is None:
        return None
    try:
        _parse(candidate)
    except TemplateSyntaxError:
        return None
    return candidate


def _static_key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _excerpt(source: str, limit: int = 120) -> str:
    text = source if len(source) <= limit else source[: limit - 1] + "…"
    return repr(text)
