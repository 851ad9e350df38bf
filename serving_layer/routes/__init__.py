"""One router per resource; each module's ``router(settings)`` builds it with the bounds from settings.

These modules do not use ``from __future__ import annotations``: FastAPI reads the handlers' annotations at
runtime, and some are ``Annotated`` aliases built from settings inside ``router``.
"""
