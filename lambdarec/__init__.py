"""lambdarec: the shared core (settings, schemas, snapshot math, store and log ports, CLI)."""

__version__ = "0.1.0"
