"""The request filter: a small expression over item attributes, parsed once and matched against items.

Grammar (clauses joined by ``;`` must all hold)::

    filter  := clause (";" clause)*
    clause  := name op value        with op one of  =  !=  <  <=  >  >=
             | name "=" value ("," value)*          any of the values (set membership)
             | name "!=" value ("," value)*         none of them (a missing attribute passes)
             | name "=" number ".." number          an inclusive numeric range
    name    := letters, digits, "_", "-", "." (not starting with a digit)
    value   := a bare word (no ; , or ", inner spaces kept) or a "quoted string" with \\" and \\\\ escapes

A bare value that reads as a number matches a numeric attribute by value (``price=50`` matches 50 and 50.0) and a
string attribute by its text; a quoted value is always text (it matches string attributes only). ``<``, ``<=``,
``>``, ``>=`` and ranges take numbers and match numeric attributes only. An item without the attribute fails every
clause but ``!=``.

Example
-------
>>> f = parse_filter("brand=acme,globex;price<=50")
>>> f.matches({"brand": "acme", "price": 12.5}), f.matches({"brand": "acme", "price": 99})
(True, False)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

Value = str | float  # a quoted value is str; a bare one that reads as a number is float
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_OP = re.compile(r"!=|<=|>=|=|<|>")
_BARE = re.compile(r'[^;,"]+')
_RANGE = re.compile(r"\s*(-?[0-9][0-9_.eE+\-]*)\s*\.\.\s*(-?[0-9][0-9_.eE+\-]*)\s*(?=;|$)")


class FilterError(ValueError):
    """A filter that does not parse; ``position`` is the 0-based character where it went wrong."""

    def __init__(self, message: str, text: str, position: int):
        self.message, self.text, self.position = message, text, position
        super().__init__(f"{message} at character {position + 1}: {text!r}")

    def pointer(self) -> str:
        """The expression with a caret under the character at fault, for an error body."""
        return f"{self.text}\n{' ' * self.position}^"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Clause:
    """One clause: ``values`` as read (a bare number as float), ``texts`` as written; a range is (low, high)."""

    name: str
    op: str
    values: tuple[Value, ...]
    texts: tuple[str, ...] = ()

    def holds(self, attributes: Mapping[str, str | int | float]) -> bool:
        if self.name not in attributes:
            return self.op == "!="
        have = attributes[self.name]
        if self.op in ("=", "!="):
            hit = any(_equal(have, v, t) for v, t in zip(self.values, self.texts, strict=True))
            return hit if self.op == "=" else not hit
        if isinstance(have, str):
            return False
        low, high = self.values[0], self.values[-1]
        return {
            "..": low <= have <= high,  # type: ignore[operator]
            "<": have < low,  # type: ignore[operator]
            "<=": have <= low,  # type: ignore[operator]
            ">": have > low,  # type: ignore[operator]
            ">=": have >= low,  # type: ignore[operator]
        }[self.op]


def _equal(have: str | int | float, value: Value, text: str) -> bool:
    """A string attribute equals the value as written; a numeric one equals a bare number by value."""
    return have == text if isinstance(have, str) else isinstance(value, float) and have == value


@dataclass(frozen=True)
class Filter:
    """A parsed filter: every clause must hold. ``text`` is the expression as given (the cache key)."""

    text: str
    clauses: tuple[Clause, ...]

    def matches(self, attributes: Mapping[str, str | int | float]) -> bool:
        return all(c.holds(attributes) for c in self.clauses)


class _Reader:
    def __init__(self, text: str):
        self.text, self.at = text, 0

    def fail(self, message: str, at: int | None = None) -> FilterError:
        return FilterError(message, self.text, self.at if at is None else at)

    def skip_spaces(self) -> None:
        while self.at < len(self.text) and self.text[self.at] == " ":
            self.at += 1

    def value(self) -> tuple[Value, str]:
        self.skip_spaces()
        if self.at < len(self.text) and self.text[self.at] == '"':
            start, self.at, out = self.at, self.at + 1, []
            while self.at < len(self.text) and self.text[self.at] != '"':
                if self.text[self.at] == "\\":
                    self.at += 1
                    if self.at >= len(self.text) or self.text[self.at] not in '"\\':
                        raise self.fail('only \\" and \\\\ may be escaped in a quoted value', self.at - 1)
                out.append(self.text[self.at])
                self.at += 1
            if self.at >= len(self.text):
                raise self.fail("unterminated quoted value", start)
            self.at += 1
            self.skip_spaces()
            return "".join(out), "".join(out)
        m = _BARE.match(self.text, self.at)
        raw = m.group(0).strip() if m else ""
        if not raw:
            raise self.fail("expected a value")
        self.at = m.end()  # type: ignore[union-attr]
        number = _number(raw)
        return (raw if number is None else number), raw


def _clause(r: _Reader) -> Clause:
    r.skip_spaces()
    name = _NAME.match(r.text, r.at)
    if name is None:
        raise r.fail("expected an attribute name (letters, digits, _ - .)")
    r.at = name.end()
    r.skip_spaces()
    op = _OP.match(r.text, r.at)
    if op is None:
        raise r.fail("expected an operator (=, !=, <, <=, >, >=)")
    r.at = op.end()
    if op.group(0) == "=" and (rng := _RANGE.match(r.text, r.at)):
        low, high = _number(rng.group(1)), _number(rng.group(2))
        if low is None or high is None or low > high:
            raise r.fail("a range is low..high with numbers, low <= high", r.at)
        r.at = rng.end()
        return Clause(name.group(0), "..", (low, high), (rng.group(1), rng.group(2)))
    start = r.at
    values = [r.value()]
    while op.group(0) in ("=", "!=") and r.at < len(r.text) and r.text[r.at] == ",":
        r.at += 1
        values.append(r.value())
    if op.group(0) not in ("=", "!=") and not isinstance(values[0][0], float):
        raise r.fail(f"{op.group(0)} needs a number", start)
    return Clause(name.group(0), op.group(0), tuple(v for v, _ in values), tuple(t for _, t in values))


def parse_filter(text: str) -> Filter:
    """Parse ``text`` (see the module docstring); ``FilterError`` with the position at fault otherwise."""
    r = _Reader(text)
    clauses = [_clause(r)]
    while r.at < len(text):
        if text[r.at] != ";":
            raise r.fail("expected ; between clauses" if text[r.at] != "," else "a list of values follows = or != only")
        r.at += 1
        clauses.append(_clause(r))
    return Filter(text, tuple(clauses))
