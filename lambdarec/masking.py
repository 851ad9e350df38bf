"""Secrets out of every message: URL passwords and registered secret values become ``***``.

Errors, log lines (structlog and the standard library's loggers) and the tracebacks the ``lambdarec`` command
prints all pass through :func:`mask_secrets`. ``Settings.load`` registers the passwords it read, so a secret
that a driver echoes on its own is masked too.

Example
-------
>>> mask_secrets("cannot reach kafka://svc:s3cret@broker:9092/events")
'cannot reach kafka://svc:***@broker:9092/events'
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote, urlsplit

MASK = "***"
MIN_SECRET_CHARS = 4  # shorter registered values would mask ordinary words
# scheme://user:password@ -- the user may be empty; the password runs to the '@'
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*):(?P<secret>[^@\s'\"]+)@")
_secrets: set[str] = set()
_lock = threading.Lock()


def mask_url(url: str) -> str:
    """``cassandra://user:secret@h/ks`` -> ``cassandra://user:***@h/ks``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return mask_secrets(url)
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", f":{MASK}@", 1)
    return parts._replace(netloc=netloc).geturl()


def register_secret(value: str | None) -> None:
    """Mask ``value`` (and its percent-decoded form) wherever it appears from now on in this process."""
    if not value:
        return
    with _lock:
        for form in {value, unquote(value)}:
            if len(form) >= MIN_SECRET_CHARS:
                _secrets.add(form)


def mask_secrets(text: str) -> str:
    """``text`` with URL passwords and every registered secret replaced by ``***``."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text
