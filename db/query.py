"""The ``--where`` filter language, parsed into SQLAlchemy expressions (values are always bound
parameters; field names come from a fixed table, never from the user's text).

    expr   := term ("or" term)*
    term   := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | FIELD OP VALUE
    OP     := = | != | < | <= | > | >= | ~        (~ is a case-insensitive substring match)
    VALUE  := bare word (letters, digits, . _ - / : + @ * %) | "double quoted" | 'single quoted'

Examples: ``model~SmolLM and msl>=2048 and status=completed``, ``tag=baseline``, ``s_per_step<2``,
``(lr<1e-4 or lora_r=64) and not status=failed``, ``lora_dropout>0 and use_lora=true``.

Fields are the run's own columns plus every training flag of :mod:`runner.flags`: a flag with a
dedicated column (``Flag.column``, e.g. max_seq_len -> msl) is filtered there, by either name; every
other flag by its own name through the run's config JSON (``json_extract`` on SQLite, ``->>`` on a
JSONB cast on PostgreSQL). A run whose config does not set a flag has no value for it.

Comparisons never yield SQL NULL: a run without a value does not match ``loss<2`` but does match
``model!=x``, so ``not`` behaves as people expect.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import cast
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Float, String

from db.errors import FilterError
from db.records import RUN_STATUSES
from runner.flags import Flag, flags

NUMBER_KINDS = ("int", "float", "time")
BOOL_WORDS = {"true": "true", "yes": "true", "on": "true", "1": "true",
              "false": "false", "no": "false", "off": "false", "0": "false"}


@dataclass(frozen=True)
class Field:
    """A filterable, sortable property of a run. ``kind`` is int, float, time, text, status, bool or
    list."""

    name: str
    kind: str
    column: str | None = None
    help: str = ""
    expression: Callable[[Any], ColumnElement] | None = None
    from_config: bool = False  # a training flag read from the run's config JSON

    def sql(self, table) -> ColumnElement:
        if self.expression is not None:
            return self.expression(table)
        return table.c[self.column or self.name]


def _progress(table) -> ColumnElement:
    return cast(table.c.last_step, Float) / table.c.max_steps


def _study_name(table) -> ColumnElement:
    """The name of the run's study (revision 0004), NULL for a single run."""
    from sqlalchemy import select

    from db.models import studies

    return select(studies.c.name).where(studies.c.id == table.c.study_id).scalar_subquery()


_RUN_FIELDS_HEAD = (
    Field("id", "int", help="run id"),
    Field("name", "text", help="run name"),
    Field("status", "status", help="/".join(RUN_STATUSES)),
)
_RUN_FIELDS = (
    Field("gpus", "int", help="number of GPUs"),
    Field("dataset", "list", column="datasets", help="one of the train/val data sets"),
    Field("tag", "list", column="tags", help="one of the tags"),
    Field("host", "text", help="host that ran it"),
    Field("study", "text", expression=_study_name, help="name of the run's study (arctui study)"),
    Field("notes", "text", help="free-text notes"),
    Field("error", "text", column="last_error", help="last error message"),
    Field("exit_code", "int", help="exit code of the training process"),
    Field("created", "time", column="created_at", help="creation time (ISO, UTC)"),
    Field("started", "time", column="started_at", help="start time (ISO, UTC)"),
    Field("ended", "time", column="ended_at", help="end time (ISO, UTC)"),
    Field("step", "int", column="last_step", help="last logged step"),
    Field("max_steps", "int", help="planned steps"),
    Field("progress", "float", expression=_progress, help="step / max_steps (0..1)"),
    Field("loss", "float", help="latest training loss"),
    Field("min_loss", "float", help="lowest training loss"),
    Field("final_loss", "float", help="train_loss at the end"),
    Field("eval_loss", "float", help="latest eval loss"),
    Field("accuracy", "float", help="latest evaluation accuracy"),
    Field("s_per_step", "float", column="seconds_per_step", help="median seconds per step"),
    Field("tokens_per_second", "float", help="latest tokens/s"),
    Field("peak_vram", "float", column="peak_vram_gb", help="peak GPU memory, GB"),
)

_ALIASES: dict[str, str] = {
    "bs": "batch_size",
    "lr": "learning_rate",
    "datasets": "dataset",
    "tags": "tag",
    "last_error": "error",
    "seconds_per_step": "s_per_step",
    "tok_s": "tokens_per_second",
    "vram": "peak_vram",
    "peak_vram_gb": "peak_vram",
    "created_at": "created",
    "started_at": "started",
    "ended_at": "ended",
    "last_step": "step",
}


def _flag_kind(flag: Flag) -> str:
    if flag.kind in ("int", "float", "bool"):
        return flag.kind
    if flag.kind in ("pair", "pairs", "strlist"):
        return "list"
    return "text"


class _ConfigValue(FunctionElement):
    """The value of one flag in a run's config JSON (``runs.config_json``, Text), as a number, text
    (lists as their JSON text) or 'true'/'false'; NULL when the config does not set it or holds
    another type. The key is a flag name from the registry (an identifier), never the user's text."""

    inherit_cache = True
    name = "config_value"

    def __init__(self, column, key: str, kind: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):  # pragma: no cover - Flag names are identifiers
            raise ValueError(f"not a flag name: {key!r}")
        self.key, self.kind = key, kind
        self.type = Float() if kind in ("int", "float") else String()
        # The key and kind are part of the statement cache key through these literal clauses.
        from sqlalchemy import literal_column

        super().__init__(column, literal_column(f"'{key}'"), literal_column(f"'{kind}'"))


@compiles(_ConfigValue)
def _config_value_sqlite(element: _ConfigValue, compiler, **kw) -> str:
    column = compiler.process(list(element.clauses)[0], **kw)
    path = f"'$.\"{element.key}\"'"
    json_type = f"json_type({column}, {path})"
    if element.kind == "bool":  # json_extract gives 1/0; say true/false as PostgreSQL does
        return f"(CASE {json_type} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END)"
    wanted = {"int": "'integer', 'real'", "float": "'integer', 'real'", "list": "'array'"}.get(element.kind, "'text'")
    return f"(CASE WHEN {json_type} IN ({wanted}) THEN json_extract({column}, {path}) END)"


@compiles(_ConfigValue, "postgresql")
def _config_value_postgresql(element: _ConfigValue, compiler, **kw) -> str:
    column = compiler.process(list(element.clauses)[0], **kw)
    value = f"(CAST({column} AS JSONB) -> '{element.key}')"
    text = f"(CAST({column} AS JSONB) ->> '{element.key}')"
    if element.kind in ("int", "float"):
        return f"(CASE WHEN jsonb_typeof({value}) = 'number' THEN CAST({text} AS DOUBLE PRECISION) END)"
    wanted = {"bool": "boolean", "list": "array"}.get(element.kind, "string")
    return f"(CASE WHEN jsonb_typeof({value}) = '{wanted}' THEN {text} END)"


def _config_field(flag: Flag) -> Field:
    kind = _flag_kind(flag)
    return Field(flag.name, kind, help=f"{flag.help or flag.name} (from the run's config)",
                 expression=lambda table: _ConfigValue(table.c.config_json, flag.name, kind), from_config=True)


def fields() -> dict[str, Field]:
    """Every filterable field: the run's columns and every training flag, from the live registry."""
    out = {f.name: f for f in _RUN_FIELDS_HEAD}
    for flag in flags():
        if flag.column:
            out[flag.column] = Field(flag.column, _flag_kind(flag), help=flag.name)
    out.update((f.name, f) for f in _RUN_FIELDS)
    for flag in flags():
        if not flag.column and flag.name not in out:
            out[flag.name] = _config_field(flag)
    return out


def aliases() -> dict[str, str]:
    """Other names of fields: short forms, and the flag name of each flag's column."""
    out = dict(_ALIASES)
    out.update((flag.name, flag.column) for flag in flags() if flag.column and flag.name != flag.column)
    return out


def __getattr__(name: str) -> Any:
    # FIELDS and ALIASES follow the flag registry (a flag registered later is filterable at once).
    if name == "FIELDS":
        return fields()
    if name == "ALIASES":
        return aliases()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~")
KEYWORDS = ("and", "or", "not")


def resolve_field(name: str, position: int = 0, *, what: str = "--where") -> Field:
    """The field called ``name`` (or an alias), else a FilterError with a did-you-mean."""
    known_fields, known_aliases = fields(), aliases()
    key = name.lower()
    key = known_aliases.get(key, key)
    if key in known_fields:
        return known_fields[key]
    known = sorted(set(known_fields) | set(known_aliases))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    run_fields = [k for k, f in known_fields.items() if not f.from_config]
    raise FilterError(
        f"{what}: unknown field '{name}' at position {position}{hint}; fields: {', '.join(run_fields)}, "
        "or any training flag by name (see `python -m runner.fine_tuning --help`)",
        position,
    )


# ---------------------------------------------------------------------------------------------- lexer

_WORD = re.compile(r"[A-Za-z0-9._\-/:+@*%]+")
_OPERATOR = re.compile(r"!=|<=|>=|==|=|<|>|~")


@dataclass(frozen=True)
class Token:
    kind: str  # word, string, op, lparen, rparen, end
    text: str
    position: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            tokens.append(Token("lparen", ch, i))
            i += 1
        elif ch == ")":
            tokens.append(Token("rparen", ch, i))
            i += 1
        elif ch in "\"'":
            start, i, chars = i, i + 1, []
            while i < n and text[i] != ch:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= n:
                raise FilterError(
                    f"--where: unterminated quoted value starting at position {start}: close it with {ch}",
                    start,
                )
            tokens.append(Token("string", "".join(chars), start))
            i += 1
        elif m := _OPERATOR.match(text, i):
            op = "=" if m.group() == "==" else m.group()
            tokens.append(Token("op", op, i))
            i = m.end()
        elif m := _WORD.match(text, i):
            tokens.append(Token("word", m.group(), i))
            i = m.end()
        else:
            raise FilterError(
                f"--where: unexpected character {ch!r} at position {i}; quote values that contain it", i
            )
    tokens.append(Token("end", "", n))
    return tokens


# --------------------------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class Comparison:
    field: Field
    op: str
    value: str
    field_position: int
    value_position: int


@dataclass(frozen=True)
class BoolOp:
    op: str  # and, or
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    item: Any


# Bounds of one filter: deeper nesting would exhaust Python's recursion limit, and thousands of terms
# exceed SQLite's expression depth (1000), which then reads as a database error.
MAX_DEPTH = 20  # nested parentheses and 'not's (SQLite's parser overflows from ~34 alternating and/or levels)
MAX_COMPARISONS = 500


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.comparisons = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def is_keyword(self, word: str) -> bool:
        return self.token.kind == "word" and self.token.text.lower() == word

    def fail(self, what: str, token: Token | None = None) -> FilterError:
        token = token or self.token
        found = "the end" if token.kind == "end" else repr(token.text)
        return FilterError(f"--where: {what} at position {token.position}, found {found}", token.position)

    def parse(self):
        node = self.expr()
        if self.token.kind != "end":
            if self.token.kind == "rparen":
                raise self.fail("unbalanced ')'")
            raise self.fail("expected 'and', 'or' or the end")
        return node

    def expr(self):
        items = [self.term()]
        while self.is_keyword("or"):
            self.i += 1
            items.append(self.term())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def term(self):
        items = [self.factor()]
        while self.is_keyword("and"):
            self.i += 1
            items.append(self.factor())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def nest(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(
                f"--where: more than {MAX_DEPTH} nested parentheses or 'not's at position {token.position}: "
                "simplify the filter",
                token.position,
            )

    def factor(self):
        token = self.token
        if self.is_keyword("not"):
            self.nest(token)
            self.i += 1
            node = Not(self.factor())
            self.depth -= 1
            return node
        if token.kind == "lparen":
            self.nest(token)
            self.i += 1
            node = self.expr()
            if self.token.kind != "rparen":
                raise self.fail(f"expected ')' (to close position {token.position})")
            self.i += 1
            self.depth -= 1
            return node
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            raise self.fail("expected a field name (e.g. status, model, msl)")
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise FilterError(
                f"--where: more than {MAX_COMPARISONS} comparisons (the one at position {token.position} is "
                f"number {self.comparisons}): split the filter or use a tag",
                token.position,
            )
        field = resolve_field(token.text, token.position)
        self.i += 1
        op = self.token
        if op.kind != "op":
            raise self.fail(f"expected an operator ({', '.join(OPERATORS)}) after '{token.text}'")
        self.i += 1
        value = self.token
        if value.kind not in ("word", "string"):
            raise self.fail(f"expected a value after '{token.text}{op.text}'")
        self.i += 1
        return Comparison(field, op.text, value.text, token.position, value.position)


def parse_where(text: str | None):
    """Parse and check a ``--where`` expression; returns an AST (None for an empty filter)."""
    if text is None or not text.strip():
        return None
    node = _Parser(text).parse()
    _check(node)
    return node


def _check(node) -> None:
    """Type-check values against fields (so a bad filter fails before any SQL is built)."""
    if isinstance(node, BoolOp):
        for item in node.items:
            _check(item)
    elif isinstance(node, Not):
        _check(node.item)
    else:
        _comparison_value(node)


# ------------------------------------------------------------------------------------------- compiler


def _comparison_value(cmp: Comparison) -> Any:
    field, op, raw = cmp.field, cmp.op, cmp.value
    where = f"at position {cmp.value_position}"
    if field.kind in NUMBER_KINDS:
        if op == "~":
            raise FilterError(
                f"--where: '~' matches text, but '{field.name}' is a {field.kind} field; use =, <, >",
                cmp.field_position,
            )
        if field.kind == "time":
            try:
                moment = datetime.fromisoformat(raw)
            except ValueError:
                raise FilterError(
                    f"--where: '{field.name}' needs a date/time like 2026-11-28 or 2026-11-28T07:30, "
                    f"got '{raw}' {where}",
                    cmp.value_position,
                ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
        try:
            number = float(raw)
        except ValueError:
            raise FilterError(
                f"--where: '{field.name}' needs a number, got '{raw}' {where}", cmp.value_position
            ) from None
        if number != number or number in (float("inf"), float("-inf")):
            raise FilterError(f"--where: '{field.name}' needs a finite number {where}", cmp.value_position)
        return number
    if field.kind == "bool":
        if op not in ("=", "!="):
            raise FilterError(f"--where: '{field.name}' is true or false; use = or !=, not '{op}'",
                              cmp.field_position)
        if raw.lower() not in BOOL_WORDS:
            raise FilterError(f"--where: '{field.name}' needs true or false, got '{raw}' {where}",
                              cmp.value_position)
        return BOOL_WORDS[raw.lower()]
    if field.kind == "list" and op not in ("=", "!=", "~"):
        raise FilterError(
            f"--where: '{field.name}' matches one element; use =, != or ~, not '{op}'", cmp.field_position
        )
    if field.kind == "status":
        if op in ("=", "!="):
            status = raw.lower()
            if status not in RUN_STATUSES:
                close = difflib.get_close_matches(status, RUN_STATUSES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise FilterError(
                    f"--where: unknown status '{raw}' {where}{hint}; statuses: {', '.join(RUN_STATUSES)}",
                    cmp.value_position,
                )
            return status
        if op != "~":
            raise FilterError(f"--where: 'status' takes =, != or ~, not '{op}'", cmp.field_position)
    return raw


def _compile_comparison(cmp: Comparison, table) -> ColumnElement:
    column = cmp.field.sql(table)
    value = _comparison_value(cmp)
    op = cmp.op
    if cmp.field.kind == "list":
        # Lists are JSON text; one element matches as its JSON form, `"name"`, with LIKE wildcards escaped.
        if op == "~":
            return column.icontains(value, autoescape=True)
        has = column.contains(json.dumps(value, ensure_ascii=False), autoescape=True)
        return has if op == "=" else not_(has)
    if op == "~":
        return and_(column.is_not(None), column.icontains(value, autoescape=True))
    if op == "!=":
        return or_(column.is_(None), column != value)
    compare = {
        "=": column.__eq__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }[op]
    return and_(column.is_not(None), compare(value))


def compile_node(node, table) -> ColumnElement:
    if node is None:
        return true()
    if isinstance(node, BoolOp):
        parts = [compile_node(item, table) for item in node.items]
        return and_(*parts) if node.op == "and" else or_(false(), *parts)
    if isinstance(node, Not):
        return not_(compile_node(node.item, table))
    return _compile_comparison(node, table)


def where_clause(text: str | None, table) -> ColumnElement:
    """SQLAlchemy boolean expression for a ``--where`` text on the runs table."""
    return compile_node(parse_where(text), table)


def sort_column(name: str, table) -> ColumnElement:
    """The column (or expression) to sort runs by; list fields cannot be sorted."""
    field = resolve_field(name, 0, what="--sort")
    if field.kind == "list":
        raise FilterError(f"--sort: cannot sort by '{field.name}' (a list); sort by another field", 0)
    return field.sql(table)
