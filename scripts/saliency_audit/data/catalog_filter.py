"""Row filters on catalog columns, such as ``saliency.gallery.where: "0.05 < z < 0.08 and mag_r < 17"``.

``DataFrame.query`` would evaluate any Python expression, and its ``@`` and attribute
syntax reach outside the frame (a config could run a shell command). This module reads
a small language of its own instead and evaluates it on the columns, nothing else:

- operands: column names (letters, digits and ``_``, or any name in backticks), numbers
  (``number_text``'s rule) and quoted strings;
- comparisons ``<  <=  >  >=  ==  !=``, chained as in Python (``0.05 < z < 0.08``), and
  ``in`` / ``not in`` a bracketed list of numbers or strings;
- ``and`` / ``&``, ``or`` / ``|``, ``not`` / ``~`` and parentheses.

A column compared with a number is read as numbers by the one number rule; a cell that
is not a number satisfies no numeric comparison. A column compared with a string is
compared as text (``==``, ``!=``, ``in`` and ``not in`` only).
"""

import operator
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from saliency_audit.data.number_text import NUMBER_PATTERN, parse_number, parse_numbers


class FilterError(ValueError):
    """The expression is not in the filter language, or names a column that does not exist."""


_TOKEN = re.compile(
    r"\s*(?:(?P<number>" + NUMBER_PATTERN + r")(?![A-Za-z0-9_])"
    r"|(?P<string>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<quoted>`[^`]+`)"
    r"|(?P<op><=|>=|==|!=|<|>|&|\||~|\(|\)|\[|\]|,)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
            "!=": operator.ne}  # fmt: skip
_KEYWORDS = {"and": "&", "or": "|", "not": "~", "in": "in"}
MAX_LENGTH = 2000


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Literal:
    value: float | str


@dataclass(frozen=True)
class Members:
    values: tuple[float | str, ...]


@dataclass(frozen=True)
class Compare:
    operands: tuple[Any, ...]  # Column | Literal | Members, one more than ops
    ops: tuple[str, ...]


@dataclass(frozen=True)
class Not:
    operand: Any


@dataclass(frozen=True)
class Logical:
    op: str  # "&" or "|"
    operands: tuple[Any, ...]


Expression = Compare | Not | Logical


def _tokens(text: str) -> list[tuple[str, str | float]]:
    tokens: list[tuple[str, str | float]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterError(f"unexpected {text[position:].strip()[:20]!r} at character {position + 1}")
        kind = match.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        value = match.group(kind)
        if kind == "number":
            number = parse_number(value)
            assert number is not None  # the token matched NUMBER_PATTERN
            tokens.append(("literal", number))
        elif kind == "string":
            tokens.append(("literal", re.sub(r"\\(.)", r"\1", value[1:-1])))
        elif kind == "quoted":
            tokens.append(("column", value[1:-1]))
        elif kind == "name" and value.lower() in _KEYWORDS:
            tokens.append(("op", _KEYWORDS[value.lower()]))
        elif kind == "name":
            tokens.append(("column", value))
        else:
            tokens.append(("op", value))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.position = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, op: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None:
            raise FilterError("the expression ends too early")
        if op is not None and token != ("op", op):
            raise FilterError(f"expected {op!r}, found {token[1]!r}")
        self.position += 1
        return token

    def at(self, op: str) -> bool:
        return self.peek() == ("op", op)

    def expression(self) -> Expression:
        parts = [self.conjunction()]
        while self.at("|"):
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Logical("|", tuple(parts))

    def conjunction(self) -> Expression:
        parts = [self.negation()]
        while self.at("&"):
            self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else Logical("&", tuple(parts))

    def negation(self) -> Expression:
        if self.at("~"):
            self.take()
            return Not(self.negation())
        if self.at("("):
            self.take()
            inner = self.expression()
            self.take(")")
            return inner
        return self.comparison()

    def operand(self) -> Column | Literal:
        kind, value = self.take()
        if kind == "column":
            return Column(value)
        if kind == "literal":
            return Literal(value)
        if value == "-" or value == "+":
            raise FilterError("a sign belongs to its number without a space")
        raise FilterError(f"expected a column, a number or a string, found {value!r}")

    def members(self) -> Members:
        self.take("[")
        values = []
        while not self.at("]"):
            kind, value = self.take()
            if kind != "literal":
                raise FilterError(f"a list after 'in' holds numbers or strings only, found {value!r}")
            values.append(value)
            if not self.at("]"):
                self.take(",")
        self.take("]")
        return Members(tuple(values))

    def comparison(self) -> Compare:
        first = self.operand()
        operands: list[Column | Literal | Members] = [first]
        ops: list[str] = []
        while True:
            token = self.peek()
            if token is not None and token[0] == "op" and token[1] in _COMPARE:
                ops.append(self.take()[1])
                operands.append(self.operand())
            elif token == ("op", "in") or (token == ("op", "~") and self._next_is_in()):
                negated = self.take()[1] == "~"
                if negated:
                    self.take("in")
                ops.append("not in" if negated else "in")
                operands.append(self.members())
            else:
                break
        if not ops:
            raise FilterError(f"{_describe(first)} is not a comparison (e.g. z < 0.08)")
        return Compare(tuple(operands), tuple(ops))

    def _next_is_in(self) -> bool:
        following = self.tokens[self.position + 1] if self.position + 1 < len(self.tokens) else None
        return following == ("op", "in")


def _describe(operand: Column | Literal) -> str:
    return f"column {operand.name!r}" if isinstance(operand, Column) else repr(operand.value)


def parse_filter(text: str) -> Expression:
    """Parse ``text``, or raise FilterError saying what is wrong and where."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"the expression is longer than {MAX_LENGTH} characters")
    parser = _Parser(text)
    if parser.peek() is None:
        raise FilterError("the expression is empty")
    try:
        tree = parser.expression()
    except RecursionError:
        raise FilterError("the expression nests too deeply") from None
    rest = parser.peek()
    if rest is not None:
        raise FilterError(f"unexpected {rest[1]!r} after a complete expression")
    return tree


def filter_columns(tree: Expression) -> set[str]:
    """The column names an expression uses."""
    if isinstance(tree, Compare):
        return {o.name for o in tree.operands if isinstance(o, Column)}
    if isinstance(tree, Not):
        return filter_columns(tree.operand)
    return set().union(*(filter_columns(o) for o in tree.operands))


def _values(operand: Column | Literal, frame: pd.DataFrame, numeric: bool) -> Any:
    if isinstance(operand, Literal):
        return operand.value
    column = frame[operand.name]
    return parse_numbers(column).to_numpy() if numeric else column.astype("string").str.strip().to_numpy(object)


def _compare(left: Any, op: str, right: Any, frame: pd.DataFrame) -> np.ndarray:
    if isinstance(right, Members):
        numeric = all(isinstance(v, float) for v in right.values)
        if not numeric and any(isinstance(v, float) for v in right.values):
            raise FilterError("a list after 'in' holds either numbers or strings, not both")
        values = _values(left, frame, numeric)
        found = pd.Series(values).isin(right.values).to_numpy(dtype=bool)
        if numeric:
            found &= ~np.isnan(np.asarray(values, dtype=float))
        return ~found if op == "not in" else found
    literals = [o.value for o in (left, right) if isinstance(o, Literal)]
    numeric = not any(isinstance(v, str) for v in literals)
    if not numeric and op not in ("==", "!="):
        raise FilterError(f"text can only be compared with == or !=, not {op}")
    a, b = _values(left, frame, numeric), _values(right, frame, numeric)
    if numeric:
        with np.errstate(invalid="ignore"):
            result = _COMPARE[op](np.asarray(a, dtype=float), np.asarray(b, dtype=float))
        # a cell that is not a number satisfies no comparison, != included
        return np.broadcast_to(result & ~np.isnan(a) & ~np.isnan(b), (len(frame),)).copy()
    result = _COMPARE[op](pd.Series(np.broadcast_to(np.asarray(a, dtype=object), (len(frame),))),
                          pd.Series(np.broadcast_to(np.asarray(b, dtype=object), (len(frame),))))  # fmt: skip
    return result.fillna(False).to_numpy(dtype=bool)


def evaluate_filter(tree: Expression, frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows of ``frame`` that satisfy ``tree``."""
    missing = sorted(filter_columns(tree) - set(map(str, frame.columns)))
    if missing:
        raise FilterError(f"column {missing[0]!r} is not in the catalog")
    if isinstance(tree, Not):
        return ~evaluate_filter(tree.operand, frame)
    if isinstance(tree, Logical):
        masks = [evaluate_filter(o, frame) for o in tree.operands]
        return np.logical_and.reduce(masks) if tree.op == "&" else np.logical_or.reduce(masks)
    result = np.ones(len(frame), dtype=bool)
    for left, op, right in zip(tree.operands, tree.ops, tree.operands[1:]):
        if isinstance(left, Members):
            raise FilterError("a list can only follow 'in'")
        result &= _compare(left, op, right, frame)
    return result
