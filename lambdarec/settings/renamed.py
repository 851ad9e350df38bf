"""Settings keys that moved, and the error that names the new key when a file, a variable or an override uses an
old one. A renamed key is refused, never silently taken: a deployment learns of the move at its first start.

Example
-------
>>> renamed_message("nope.nothing", 1, "LAMBDAREC_") is None
True
"""

from __future__ import annotations

from typing import Any

# old dotted key -> new dotted key (issue 13: sub-tables per concern and per backend).
RENAMED: dict[str, str] = {}


def renamed_message(key: str, value: Any, env_prefix: str) -> str | None:
    """The error for an old ``key`` (a dotted path) given ``value``, or None when the key was not renamed.

    A key that became a table (``batch.index``) is an old key only when given a plain value, not a table.
    """
    new = RENAMED.get(key)
    if new is None or (isinstance(value, dict) and new.startswith(f"{key}.")):
        return None
    env = env_prefix + "__".join(new.split(".")).upper()
    return f"setting '{key}' was renamed '{new}' (environment variable ${env}); see the README's changelog"
