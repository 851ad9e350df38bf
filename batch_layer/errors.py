"""Errors of the batch layer's input side; each message names the input and what would be right."""

from __future__ import annotations


class BadInputError(ValueError):
    """An input file is missing, unreadable, or lacks a required column."""


class BadRowError(BadInputError):
    """A row of an input file is malformed and ``batch.on_bad_rows = "fail"``.

    Attributes
    ----------
    path : str
        The file holding the row.
    row : int
        The row's 1-based number among the file's data rows (a CSV's header is not counted).
    reason : str
        The reason key, as counted in :class:`batch_layer.interactions.ReadReport` ``bad_rows``.
    """

    def __init__(self, message: str, *, path: str, row: int, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.row = row
        self.reason = reason


class DatasetFetchError(RuntimeError):
    """A public dataset could not be obtained or did not match the expected content."""


class RegistryUnreachableError(DatasetFetchError):
    """The package registry that carries a dataset could not be reached (no network, proxy, DNS)."""
