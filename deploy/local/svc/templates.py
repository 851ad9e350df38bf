"""Config templates: ``@KEY@`` placeholders filled from values, an unknown placeholder an error; a Kafka cluster id."""

from __future__ import annotations

import base64
import os
import re
import uuid

PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")


class TemplateError(ValueError):
    """A template names a placeholder no value was given for, or a KEY=VALUE pair is malformed."""


def parse_pairs(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` as a dict; a pair without ``=`` is an error."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise TemplateError(f"render: expected KEY=VALUE, got {pair!r}")
        values[key] = value
    return values


def render(template: str, out: str, values: dict[str, str]) -> None:
    """Write ``template`` with every ``@KEY@`` replaced to ``out`` (atomically, through ``out.tmp``)."""
    with open(template, encoding="utf-8") as f:
        text = f.read()
    missing = sorted({k for k in PLACEHOLDER.findall(text) if k not in values})
    if missing:
        raise TemplateError("render: {}: no value for {}".format(template, ", ".join(missing)))
    text = PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)


def cluster_id() -> str:
    """A random Kafka cluster id (a base64url uuid without padding, as ``kafka-storage random-uuid`` prints).

    Like Kafka's own ``Uuid.randomUuid``, an id that would start with ``-`` is drawn again: a command-line parser
    reads ``-t -l_Zw...`` as an option, not as the id (one uuid in 64 encodes that way).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
