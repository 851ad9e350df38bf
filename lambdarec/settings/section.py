"""What every settings section shares: unknown keys refused, assignments validated, URL schemes checked."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from lambdarec.masking import mask_url


class ConfigError(ValueError):
    """A setting is unknown or invalid; the message names the key and what would be right."""


class Section(BaseModel):
    """A table of the settings tree: unknown keys are refused, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def check_scheme(url: str, allowed: tuple[str, ...], what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in allowed:
        raise ValueError(
            f"{what} URL {mask_url(url)!r} has scheme {parts.scheme!r}; expected one of {', '.join(allowed)}"
        )
    if parts.scheme == "kafka" and "@" in parts.netloc:
        raise ValueError(f"{what} URL {mask_url(url)!r} carries credentials; set log.username and log.password instead")
    return url
