"""The request filter expression: what each clause matches, and errors that point at the character at fault."""

from __future__ import annotations

import pytest

from lambdarec.catalog.filters import FilterError, parse_filter

ITEM = {"brand": "acme", "price": 49.5, "size": "42", "stock": 3, "title": 'a;b, "c"'}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("brand=acme", True),
        ("brand=globex", False),
        ("brand=globex,acme", True),
        ("brand!=globex,initech", True),
        ("brand!=acme", False),
        ("price<=50", True),
        ("price<49.5", False),
        ("price>=49.5;stock>2", True),
        ("price=40..50", True),
        ("price=50..60", False),
        ("stock=3", True),  # a bare number equals a numeric attribute by value
        ("size=42", True),  # ... and a string attribute by its text
        ('stock="3"', False),  # a quoted value is text: numeric attributes never equal it
        ("colour=red", False),  # a missing attribute fails every clause ...
        ("colour!=red", True),  # ... but !=
        ("brand<5", False),  # a string attribute is never in a numeric range
        ('title="a;b, \\"c\\""', True),
        (" brand = acme ; price <= 50 ", True),
        ("brand=acme;price>100", False),
    ],
)
def test_clauses_match_as_documented(text: str, expected: bool) -> None:
    assert parse_filter(text).matches(ITEM) is expected


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("brand~acme", 5, "operator"),
        ("price<cheap", 6, "needs a number"),
        ("", 0, "attribute name"),
        ("brand=acme;", 11, "attribute name"),
        ('brand="acme', 6, "unterminated"),
        ("price<1,2", 7, "follows = or != only"),
        ("price=9..1", 6, "low <= high"),
        ("1abc=2", 0, "attribute name"),
        ("brand=", 6, "expected a value"),
        ('t="a\\b"', 4, "escaped"),
    ],
)
def test_a_bad_expression_names_the_problem_and_its_position(text: str, position: int, words: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(text)
    err = caught.value
    assert err.position == position and words in err.message
    assert f"character {position + 1}" in str(err)
    assert err.pointer().splitlines()[-1] == " " * position + "^"
