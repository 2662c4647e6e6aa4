"""Grid encoders: the text form of an ARC grid, and its exact inverse.

Users name an encoder with a constructor string such as
``GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))``. The string is parsed by a small
recursive-descent parser over a fixed table of encoder names and literal arguments; nothing in it is
ever evaluated as Python.

Texts for the grid ``[[1,2],[3,0]]``::

    MinimalGridEncoder()                   12\\n30
    GridWithSeparationEncoder('|')         1|2\\n3|0
    RowNumberEncoder(MinimalGridEncoder()) 1 12\\n2 30
    RepeatNumberEncoder(n=3)               111222\\n333000
    GridCodeBlockEncoder(inner)            ```grid\\n12\\n30\\n```
    GridShapeEncoder(inner)                ```grid shape: 2x2\\n12\\n30\\n```
    ReplaceNumberEncoder(inner)            digits replaced by ñ ò ÷ û ą ć ď ę Ě Ğ

``to_grid`` is strict (it accepts what ``to_text`` writes, and raises ``ValueError`` otherwise).
Model output is read by ``read``, which accepts what arc24's decoders accept (a shape header or row
numbers that disagree with the rows, a missing closing fence, text after it, grids over 30x30) and
raises ``ValueError`` where arc24's raise; :func:`decode_prediction` wraps it and never raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.errors import EncoderSpecError

Grid = list[list[int]]

DEFAULT_GRID_ENCODER = "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))"

# Ten characters that SmolLM2, Qwen2 and Llama 3 tokenizers each keep as one token.
REPLACEMENT_SYMBOLS = ("ñ", "ò", "÷", "û", "ą", "ć", "ď", "ę", "Ě", "Ğ")

FENCE_OPEN = "```grid"
FENCE_CLOSE = "```"


def _check_grid(grid: Grid) -> None:
    """Raise ValueError unless ``grid`` is a non-empty rectangular grid of ints 0-9."""
    if not isinstance(grid, list) or not grid:
        raise ValueError("a grid must be a non-empty list of rows")
    width = None
    for r, row in enumerate(grid):
        if not isinstance(row, list) or not row:
            raise ValueError(f"row {r + 1} is not a non-empty list")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ValueError(f"ragged rows: row {r + 1} has {len(row)} cells, row 1 has {width}")
        for value in row:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
                raise ValueError(f"row {r + 1} holds {value!r}; cells must be ints 0-9")


def _digit_row(line: str, row_number: int) -> list[int]:
    if not line:
        raise ValueError(f"row {row_number} is empty")
    if not (line.isascii() and line.isdigit()):
        bad = next(ch for ch in line if not "0" <= ch <= "9")
        raise ValueError(f"row {row_number} holds {bad!r}, not a digit")
    return list(map(int, line))


def _read_cells(line: str, row_number: int) -> list[int]:
    """One digit per character, as ``int(ch)`` reads it (Unicode decimal digits included)."""
    bad = next((ch for ch in line if not ch.isdecimal()), None)
    if bad is not None:
        raise ValueError(f"row {row_number} holds {bad!r}, not a digit")
    return [int(ch) for ch in line]


def _read_lines(text: str) -> list[str]:
    """The lines of an unwrapped grid: surrounding whitespace dropped, any line break splits."""
    return text.strip().splitlines()


def _rectangular(rows: Grid) -> Grid:
    if not rows:
        raise ValueError("no rows")
    width = len(rows[0])
    for r, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"ragged rows: row {r + 1} has {len(row)} cells, row 1 has {width}")
    return rows


class GridEncoder:
    """Base class. ``spec`` is the constructor string that recreates the encoder."""

    #: Constructor parameters: (name, kind, default) with kind "encoder", "str" or "int".
    params: tuple[tuple[str, str, object], ...] = ()

    def to_text(self, grid: Grid) -> str:
        raise NotImplementedError

    def to_grid(self, text: str) -> Grid:
        raise NotImplementedError

    def read(self, text: str) -> Grid:
        """Model output read as arc24 reads it: lenient where arc24 is; may return a ragged or empty
        grid (the caller validates it); raises ``ValueError`` where arc24 raises."""
        raise NotImplementedError

    @property
    def spec(self) -> str:
        args = []
        for name, kind, _default in self.params:
            value = getattr(self, name)
            # ints by keyword, as users write them: RepeatNumberEncoder(n=3)
            args.append(
                value.spec if kind == "encoder" else repr(value) if kind == "str" else f"{name}={value}"
            )
        return f"{type(self).__name__}({', '.join(args)})"

    def __repr__(self) -> str:
        return self.spec

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GridEncoder) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.spec)


class MinimalGridEncoder(GridEncoder):
    """One line per row, one digit per cell."""

    def to_text(self, grid: Grid) -> str:
        return "\n".join("".join(map(str, row)) for row in grid)

    def to_grid(self, text: str) -> Grid:
        return _rectangular([_digit_row(line, i + 1) for i, line in enumerate(text.split("\n"))])

    def read(self, text: str) -> Grid:
        return [_read_cells(line, i + 1) for i, line in enumerate(_read_lines(text))]


class GridWithSeparationEncoder(GridEncoder):
    """One line per row, cells joined by ``split_symbol``."""

    params = (("split_symbol", "str", None),)

    def __init__(self, split_symbol: str):
        if not isinstance(split_symbol, str) or not split_symbol:
            raise ValueError("split_symbol must be a non-empty string")
        if any(ch.isdigit() or ch in "\n\r" or ch in REPLACEMENT_SYMBOLS for ch in split_symbol):
            raise ValueError("split_symbol must not contain digits, newlines or replacement symbols")
        self.split_symbol = split_symbol

    def to_text(self, grid: Grid) -> str:
        return "\n".join(self.split_symbol.join(map(str, row)) for row in grid)

    def to_grid(self, text: str) -> Grid:
        rows = []
        for i, line in enumerate(text.split("\n")):
            cells = line.split(self.split_symbol)
            joined = "".join(cells)
            if len(joined) != len(cells):
                raise ValueError(f"row {i + 1} is not single digits separated by {self.split_symbol!r}")
            rows.append(_digit_row(joined, i + 1))
        return _rectangular(rows)

    def read(self, text: str) -> Grid:
        rows = []
        for i, line in enumerate(_read_lines(text)):
            try:
                rows.append([int(cell) for cell in line.split(self.split_symbol)])
            except ValueError:
                raise ValueError(f"row {i + 1} is not numbers separated by {self.split_symbol!r}") from None
        return rows


class RepeatNumberEncoder(GridEncoder):
    """Each digit written ``n`` times (for tokenizers that merge digit runs, e.g. Llama 3)."""

    params = (("n", "int", 3),)

    def __init__(self, n: int = 3):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError("n must be a positive integer")
        self.n = n

    def to_text(self, grid: Grid) -> str:
        return "\n".join("".join(str(v) * self.n for v in row) for row in grid)

    def to_grid(self, text: str) -> Grid:
        rows = []
        for i, line in enumerate(text.split("\n")):
            if len(line) % self.n:
                raise ValueError(f"row {i + 1} length {len(line)} is not a multiple of {self.n}")
            digits = line[:: self.n]
            if "".join(ch * self.n for ch in digits) != line:
                raise ValueError(f"row {i + 1} does not repeat each digit {self.n} times")
            rows.append(_digit_row(digits, i + 1))
        return _rectangular(rows)

    def read(self, text: str) -> Grid:
        # Every n-th character is the cell; the repeats are not checked.
        return [_read_cells(line[:: self.n], i + 1) for i, line in enumerate(_read_lines(text))]


class _WrapperEncoder(GridEncoder):
    params = (("encoder", "encoder", None),)

    def __init__(self, encoder: GridEncoder):
        if not isinstance(encoder, GridEncoder):
            raise ValueError("the argument must be an encoder such as MinimalGridEncoder()")
        self.encoder = encoder


class RowNumberEncoder(_WrapperEncoder):
    """Prefix each line of the inner text with its 1-based number and a space."""

    def to_text(self, grid: Grid) -> str:
        lines = self.encoder.to_text(grid).split("\n")
        return "\n".join(f"{i + 1} {line}" for i, line in enumerate(lines))

    def to_grid(self, text: str) -> Grid:
        inner = []
        for i, line in enumerate(text.split("\n")):
            prefix = f"{i + 1} "
            if not line.startswith(prefix):
                raise ValueError(f"line {i + 1} does not start with its row number {i + 1}")
            inner.append(line[len(prefix) :])
        return self.encoder.to_grid("\n".join(inner))

    def read(self, text: str) -> Grid:
        # Whatever precedes the first space is taken as the row number, right or wrong.
        inner = []
        for i, line in enumerate(text.splitlines()):
            _number, space, rest = line.partition(" ")
            if not space:
                raise ValueError(f"line {i + 1} has no row number before a space")
            inner.append(rest + "\n")
        return self.encoder.read("".join(inner))


def _writes_fence(encoder: GridEncoder) -> bool:
    return encoder.to_text([[0]]).startswith(FENCE_OPEN)


def _fenced_body(text: str, header_ok) -> tuple[str, str]:
    """Split a fenced block into (header line, body). Text after the closing fence is ignored.

    Nested fences (a fenced encoder inside another) are matched by depth."""
    lines = text.split("\n")
    if not header_ok(lines[0]):
        raise ValueError(f"missing opening fence {FENCE_OPEN!r}")
    depth = 0
    for j in range(1, len(lines)):
        if lines[j].startswith(FENCE_OPEN):
            depth += 1
        elif lines[j].startswith(FENCE_CLOSE):  # model output may run on after the fence
            if depth == 0:
                if j == 1:
                    raise ValueError("the fenced block is empty")
                return lines[0], "\n".join(lines[1:j])
            depth -= 1
    raise ValueError(f"missing closing fence {FENCE_CLOSE!r}")


class GridCodeBlockEncoder(_WrapperEncoder):
    """The inner text inside a ```grid code block."""

    def to_text(self, grid: Grid) -> str:
        return f"{FENCE_OPEN}\n{self.encoder.to_text(grid)}\n{FENCE_CLOSE}"

    def to_grid(self, text: str) -> Grid:
        _, body = _fenced_body(text, lambda line: line == FENCE_OPEN)
        return self.encoder.to_grid(body)

    def read(self, text: str) -> Grid:
        # The grid runs from the first "```grid" line to the next "\n```", or to the end of the text.
        if _writes_fence(self.encoder):
            return self.to_grid(text)  # arc24 has no nested fences: read them strictly, by depth
        opening = FENCE_OPEN + "\n"
        if opening not in text:
            raise ValueError(f"missing opening fence {FENCE_OPEN!r} on a line of its own")
        body = text.split(opening, 2)[1]
        return self.encoder.read(body.split("\n" + FENCE_CLOSE, 1)[0])


class GridShapeEncoder(_WrapperEncoder):
    """The inner text inside a code block whose header gives the shape (rows x columns)."""

    HEADER = FENCE_OPEN + " shape: "

    def to_text(self, grid: Grid) -> str:
        return f"{self.HEADER}{len(grid)}x{len(grid[0])}\n{self.encoder.to_text(grid)}\n{FENCE_CLOSE}"

    def to_grid(self, text: str) -> Grid:
        header, body = _fenced_body(text, lambda line: line.startswith(self.HEADER))
        shape = header[len(self.HEADER) :]
        rows_text, sep, cols_text = shape.partition("x")
        if not (sep and rows_text.isdigit() and cols_text.isdigit()):
            raise ValueError(f"malformed shape header {header!r}")
        grid = self.encoder.to_grid(body)
        if (len(grid), len(grid[0])) != (int(rows_text), int(cols_text)):
            raise ValueError(
                f"shape header says {rows_text}x{cols_text} but the rows make {len(grid)}x{len(grid[0])}"
            )
        return grid

    def read(self, text: str) -> Grid:
        # The header's numbers are not read: the rows make the shape. The grid ends at the first line
        # that starts with a fence, or at the end of the text.
        if _writes_fence(self.encoder):
            return self.to_grid(text)  # arc24 has no nested fences: read them strictly, by depth
        header = self.HEADER.rstrip()
        rows: list[str] | None = None
        for line in text.splitlines():
            if line.startswith(header):
                rows = [] if rows is None else rows
            elif rows is not None:
                if line.startswith(FENCE_CLOSE):
                    break
                rows.append(line)
        if rows is None:
            raise ValueError(f"missing opening fence {header!r}")
        return self.encoder.read("\n".join(rows))


class ReplaceNumberEncoder(_WrapperEncoder):
    """Every digit of the inner text replaced by one of ten single-token symbols."""

    _to_symbols = str.maketrans("0123456789", "".join(REPLACEMENT_SYMBOLS))
    _to_digits = str.maketrans("".join(REPLACEMENT_SYMBOLS), "0123456789")

    def __init__(self, encoder: GridEncoder):
        super().__init__(encoder)
        probe = encoder.to_text([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
        if any(symbol in probe for symbol in REPLACEMENT_SYMBOLS):
            raise ValueError("the inner encoder already uses replacement symbols; use it only once")

    def to_text(self, grid: Grid) -> str:
        return self.encoder.to_text(grid).translate(self._to_symbols)

    def to_grid(self, text: str) -> Grid:
        bad = next((ch for ch in text if "0" <= ch <= "9"), None)
        if bad is not None:
            raise ValueError(f"found the digit {bad!r} where a replacement symbol was expected")
        return self.encoder.to_grid(text.translate(self._to_digits))

    def read(self, text: str) -> Grid:
        return self.encoder.read(text.translate(self._to_digits))


ENCODERS: dict[str, type[GridEncoder]] = {
    cls.__name__: cls
    for cls in (
        MinimalGridEncoder,
        GridWithSeparationEncoder,
        RowNumberEncoder,
        RepeatNumberEncoder,
        GridCodeBlockEncoder,
        GridShapeEncoder,
        ReplaceNumberEncoder,
    )
}


def _signature(cls: type[GridEncoder]) -> str:
    parts = []
    for name, kind, default in cls.params:
        parts.append("inner" if kind == "encoder" else f"{name}={default!r}" if default is not None else name)
    return f"{cls.__name__}({', '.join(parts)})"


def valid_encoders_text() -> str:
    return ", ".join(_signature(cls) for cls in ENCODERS.values())


# ----------------------------------------------------------------------------------------------------
# Constructor-string parser:
#   expr   := NAME "(" [arg ("," arg)* [","]] ")"
#   arg    := [NAME "="] (expr | STRING | INT)
#   STRING := '...' | "..."  (backslash escapes \\ \' \" \n \t)
#   INT    := ["-"] DIGITS


class _SpecParser:
    def __init__(self, spec: str):
        self.spec = spec
        self.pos = 0

    def fail(self, problem: str, pos: int | None = None) -> EncoderSpecError:
        pos = self.pos if pos is None else pos
        marked = self.spec[:pos] + "^" + self.spec[pos:]
        return EncoderSpecError(
            f"bad grid encoder: {problem} at column {pos + 1} of {marked!r} (^ marks the spot); "
            f"valid encoders: {valid_encoders_text()}"
        )

    def skip_space(self) -> None:
        while self.pos < len(self.spec) and self.spec[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.spec[self.pos] if self.pos < len(self.spec) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = repr(self.spec[self.pos]) if self.pos < len(self.spec) else "the end"
            raise self.fail(f"expected {char!r} but found {found}")
        self.pos += 1

    def name(self) -> str:
        self.skip_space()
        start = self.pos
        while self.pos < len(self.spec) and (self.spec[self.pos].isalnum() or self.spec[self.pos] == "_"):
            self.pos += 1
        if start == self.pos or self.spec[start].isdigit():
            self.pos = start
            raise self.fail("expected an encoder name")
        return self.spec[start : self.pos]

    def parse(self) -> GridEncoder:
        if not self.spec.strip():
            raise self.fail("the spec is empty")
        encoder = self.expr()
        if self.peek():
            raise self.fail("unexpected text after the encoder")
        return encoder

    def expr(self) -> GridEncoder:
        self.skip_space()
        start = self.pos
        name = self.name()
        cls = ENCODERS.get(name)
        if cls is None:
            raise self.fail(f"unknown encoder {name!r}", start)
        self.expect("(")
        positional: list[tuple[int, object]] = []
        keyword: dict[str, tuple[int, object]] = {}
        while self.peek() != ")":
            arg_start = self.pos
            key = None
            if self.peek().isalpha() or self.peek() == "_":
                save = self.pos
                word = self.name()
                if self.peek() == "=":
                    self.pos += 1
                    key = word
                else:
                    self.pos = save
            self.skip_space()
            value_pos = self.pos
            value = self.value()
            if key is None:
                if keyword:
                    raise self.fail("positional argument after a keyword argument", arg_start)
                positional.append((value_pos, value))
            else:
                if key in keyword:
                    raise self.fail(f"argument {key!r} given twice", arg_start)
                keyword[key] = (value_pos, value)
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != ")":
                raise self.fail("expected ',' or ')'")
        self.expect(")")
        return self.build(cls, start, positional, keyword)

    def value(self) -> object:
        char = self.peek()
        if char in ("'", '"'):
            return self.string()
        if char == "-" or char.isdigit():
            return self.integer()
        if char.isalpha() or char == "_":
            return self.expr()
        raise self.fail("expected an encoder, a quoted string or an integer")

    def string(self) -> str:
        quote = self.spec[self.pos]
        start = self.pos
        self.pos += 1
        out = []
        escapes = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
        while self.pos < len(self.spec):
            char = self.spec[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(out)
            if char == "\\":
                nxt = self.spec[self.pos + 1 : self.pos + 2]
                if nxt not in escapes:
                    raise self.fail("unknown escape in string")
                out.append(escapes[nxt])
                self.pos += 2
                continue
            out.append(char)
            self.pos += 1
        raise self.fail("unterminated string", start)

    def integer(self) -> int:
        start = self.pos
        if self.spec[self.pos] == "-":
            self.pos += 1
        digits_start = self.pos
        while self.pos < len(self.spec) and self.spec[self.pos].isdigit():
            self.pos += 1
        if digits_start == self.pos:
            raise self.fail("expected digits", start)
        return int(self.spec[start : self.pos])

    def build(self, cls, start, positional, keyword) -> GridEncoder:
        params = cls.params
        if len(positional) > len(params):
            pos = positional[len(params)][0]
            raise self.fail(f"{_signature(cls)} takes {len(params)} argument(s)", pos)
        values: dict[str, tuple[int, object]] = {}
        for (name, _, _), item in zip(params, positional, strict=False):
            values[name] = item
        names = [p[0] for p in params]
        for key, item in keyword.items():
            if key not in names:
                raise self.fail(f"{cls.__name__} has no argument {key!r}; it is {_signature(cls)}", item[0])
            if key in values:
                raise self.fail(f"argument {key!r} given twice", item[0])
            values[key] = item
        kwargs = {}
        for name, kind, default in params:
            if name not in values:
                if default is None:
                    raise self.fail(f"{cls.__name__} needs its argument: {_signature(cls)}", start)
                kwargs[name] = default
                continue
            pos, value = values[name]
            expected = {"encoder": GridEncoder, "str": str, "int": int}[kind]
            if not isinstance(value, expected):
                what = {"encoder": "an encoder", "str": "a quoted string", "int": "an integer"}[kind]
                raise self.fail(f"{cls.__name__} argument {name!r} must be {what}", pos)
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except ValueError as exc:
            raise self.fail(f"{cls.__name__}: {exc}", start) from None


def create_grid_encoder(spec: str) -> GridEncoder:
    """Build the encoder named by a constructor string; :class:`EncoderSpecError` if it is invalid."""
    if not isinstance(spec, str):
        raise EncoderSpecError(f"bad grid encoder: expected a string, got {type(spec).__name__}")
    return _SpecParser(spec).parse()


def answer_prefix_for(encoder: GridEncoder) -> str:
    """What an inference prompt gives away of the answer grid: the opening fence, if the encoder writes one."""
    return FENCE_OPEN if _writes_fence(encoder) else ""


@dataclass(frozen=True)
class Decoded:
    """A decoded prediction: ``grid`` when valid, else ``error`` says why it is invalid."""

    grid: Grid | None
    error: str | None

    @property
    def valid(self) -> bool:
        return self.grid is not None


def decode_prediction(encoder: GridEncoder, text: str, *, prefix: str = "") -> Decoded:
    """Decode model output (``prefix`` + ``text``) as arc24 does; never raises.

    A grid is kept wherever arc24 keeps one (see :meth:`GridEncoder.read`); it must then be a
    non-empty rectangular grid of 0-9, of any size. Where arc24 raises or rejects the grid,
    ``Decoded.error`` says why."""
    try:
        if not isinstance(text, str):
            return Decoded(None, f"invalid prediction: expected text, got {type(text).__name__}")
        full = prefix + text
        if not full.strip():
            return Decoded(None, "invalid prediction: empty text")
        grid = encoder.read(full)
        _check_grid(grid)
        return Decoded(grid, None)
    except Exception as exc:  # noqa: BLE001 - model output may break a decoder in any way
        return Decoded(None, f"invalid prediction: {exc}")
