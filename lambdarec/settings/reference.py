"""The configuration reference, ``docs/configuration.md``, rendered from the settings tree.

Every section and field of :class:`~lambdarec.settings.Settings`, nested tables such as ``batch.columns``
included: its key, type and bounds, default, the environment variable that sets it, and its description. The
text depends only on the code (never on the environment or a config file), so it is stable: a test compares it
with the committed file, and ``lambdarec config reference --out docs/configuration.md`` regenerates it.

Example
-------
>>> text = render_reference()
>>> "`LAMBDAREC_STORE__URL`" in text and "## `[batch.columns]`" in text
True
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from lambdarec.settings.tree import CONFIG_ENV, ENV_PREFIX, PROGRAM_VARIABLES, Settings

REGENERATE = "lambdarec config reference --out docs/configuration.md"

_INTRO = f"""\
# Configuration reference

<!-- Generated from lambdarec/settings/ by `{REGENERATE}`. Do not edit by hand. -->

One settings tree configures every layer. Settings are read from, highest precedence first:

1. command-line flags (`--store`, `--log`, `--interactions`, ...), where a command has them;
2. environment variables `{ENV_PREFIX}<SECTION>__<KEY>`: the key's path in upper case joined by `__`, e.g.
   `{ENV_PREFIX}STORE__URL` or `{ENV_PREFIX}BATCH__COLUMNS__USER_ID`;
3. the TOML file named by `--config PATH` or `${CONFIG_ENV}`;
4. the defaults below.

In an environment variable a list or a map is written as JSON, e.g.
`{ENV_PREFIX}SERVING__ADMIN_KEY_HASHES='["<64 hex characters>"]'` or
`{ENV_PREFIX}STORE__CASSANDRA__REPLICATION='{{"dc1": 3}}'`; in the file, as TOML. An unknown key, in the file
or in a `{ENV_PREFIX}*` variable, is an error that names it.
`lambdarec config show [--json]` prints the effective settings with secrets masked.

"Unset" means the setting has no value unless one is given; TOML has no null, so leave the key out.
"""


def render_reference(settings_cls: type[BaseModel] = Settings) -> str:
    """The whole reference as Markdown: an introduction, then one table per section and nested table.

    Parameters
    ----------
    settings_cls
        The root of the tree; every field of it must be a section (a pydantic model).

    Returns
    -------
    str
        The text of ``docs/configuration.md``, ending with a newline.
    """
    sections = _sections((), settings_cls)
    index = " · ".join(f"[`{'.'.join(path)}`](#{_anchor(path)})" for path, _, _ in sections)
    parts = [_INTRO, f"Sections: {index}\n"]
    for path, model, doc in sections:
        parts.append(_render_section(path, model, doc))
    parts.append(_render_not_settings())
    return "\n".join(parts)


def _sections(path: tuple[str, ...], model: type[BaseModel]) -> list[tuple[tuple[str, ...], type[BaseModel], str]]:
    """(path, model, description) of every model under ``model``, depth first, in field order."""
    found = []
    for name, field in model.model_fields.items():
        sub, key = _model_of(field.annotation), (*path, name)
        if sub is None and (sub := _collection_model(field.annotation)) is not None:
            key = (*key, "NAME") if typing.get_origin(field.annotation) is dict else key
        if sub is None:
            continue
        doc = _first_paragraph(sub.__doc__) or field.description or ""
        found.append((key, sub, doc))
        found.extend(_sections(key, sub))
    return found


def _collection_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a ``dict[str, Model]`` (a table per name) or a ``list[Model]`` (an array of tables)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and args:
        return _model_of(args[1])
    return _model_of(args[0]) if origin is list and args else None


def _render_section(path: tuple[str, ...], model: type[BaseModel], doc: str) -> str:
    rows = ["| key | type | default | environment variable | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            kind, default = f"table, see [`{'.'.join((*path, name))}`](#{_anchor((*path, name))})", "(table)"
        elif _collection_model(field.annotation) is not None:
            table = (*path, name, "NAME") if typing.get_origin(field.annotation) is dict else (*path, name)
            kind = f"{_type_name(field.annotation)}, see [`{'.'.join(table)}`](#{_anchor(table)})"
            default = _describe_default(field)
        else:
            kind, default = _describe_type(field), _describe_default(field)
        env = ENV_PREFIX + "__".join((*path, name)).upper()
        if "NAME" in path:  # inside a map of tables: set through the map variable, as JSON
            env = ENV_PREFIX + "__".join(path[: path.index("NAME")]).upper()
        cells = [f"`{name}`", kind, default, f"`{env}`", field.description or ""]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    heading = f"## `[{'.'.join(path)}]`"
    return f"{heading}\n\n{doc}\n\n" + "\n".join(rows) + "\n"


def _render_not_settings() -> str:
    names = ", ".join(f"`{p}`" for p in PROGRAM_VARIABLES)
    return (
        "## Variables that are not settings\n\n"
        f"A `{ENV_PREFIX}` variable is a setting when it names a section (`{ENV_PREFIX}STORE`) or a key in one "
        f"(`{ENV_PREFIX}STORE__URL`). The program reads these others itself: {names}. "
        f"`${CONFIG_ENV}` names the settings file; `LAMBDAREC_LOG_LEVEL` (default `INFO`) and "
        "`LAMBDAREC_LOG_FORMAT` (`json`, or `console`; default `console` on a terminal, else `json`) shape the "
        "logs on stderr, the libraries' messages (kafka-python, cassandra-driver, uvicorn, ray) included, in the "
        "same format; the client libraries' INFO messages show only at `DEBUG`; `LAMBDAREC_CACHE` is where "
        "`lambdarec datasets fetch` keeps what it downloads; `LAMBDAREC_FUSED_MERGE=0` ranks every list with the "
        "merge's numpy steps instead of its compiled kernel (the same lists for more CPU per list; numba, about "
        "120 MiB of a serving process, then stays unloaded; the metric `lambdarec_serving_merge_kernel` says which "
        "path a process runs). Any other prefixed name belongs to another tool (the "
        "test fixtures, `deploy/local/services`) and is left alone, except a section name followed by a single `_`, "
        "refused as a slip for `__`.\n"
    )


# ---- types and defaults ---------------------------------------------------------------------------------------

_SCALARS = {str: "string", int: "integer", float: "float", bool: "boolean", SecretStr: "secret string"}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return annotation if inspect.isclass(annotation) and issubclass(annotation, BaseModel) else None


def _type_name(annotation: Any) -> str:  # noqa: PLR0911 (one return per kind of type)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        unset = " or unset" if type(None) in args else ""
        return " or ".join(named) + unset
    if origin is dict:
        return f"map of {_type_name(args[0])} to {_type_name(args[1])}"
    if origin in (list, tuple, set, frozenset):
        return f"list of {_type_name(args[0])}"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if annotation is Any:
        return "value"
    return getattr(annotation, "__name__", str(annotation))


# pydantic keeps a field's bounds as annotated-types markers, each with one of these attributes.
_BOUNDS = (("ge", "≥ {}"), ("gt", "> {}"), ("le", "≤ {}"), ("lt", "< {}"), ("min_length", "length ≥ {}"),
           ("max_length", "length ≤ {}"), ("pattern", "matching `{}`"))  # fmt: skip


def _describe_type(field: FieldInfo) -> str:
    bounds = [
        form.format(getattr(m, attr))
        for m in field.metadata
        for attr, form in _BOUNDS
        if getattr(m, attr, None) is not None
    ]
    kind = _type_name(field.annotation)
    return f"{kind} ({', '.join(bounds)})" if bounds else kind


def _describe_default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    return f"`{_toml(value)}`"


def _toml(value: Any) -> str:
    """A default as it would be written in the TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value if isinstance(value, str) else str(value))  # a JSON string is a TOML basic string


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


# ---- markdown -------------------------------------------------------------------------------------------------


def _first_paragraph(doc: str | None) -> str:
    return inspect.cleandoc(doc).split("\n\n", 1)[0].replace("\n", " ") if doc else ""


def _anchor(path: tuple[str, ...]) -> str:
    # GitHub's heading anchors: lower case, punctuation other than '-' and '_' dropped.
    return re.sub(r"[^a-z0-9_-]", "", "".join(path).lower())


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|")
