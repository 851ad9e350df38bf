"""The archiver: the event log -> the master dataset (the lake), exactly once."""

from batch_layer.archive.archiver import Archiver, ArchiveStats

__all__ = ["ArchiveStats", "Archiver"]
