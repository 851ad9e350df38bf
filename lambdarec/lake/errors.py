"""The lake's errors: each message says why and what would help."""

from __future__ import annotations


class LakeError(RuntimeError):
    """The lake cannot do what was asked; the message says why and what would help."""


class LakeEmptyError(LakeError):
    """The lake has no events table yet (nothing archived or imported)."""
