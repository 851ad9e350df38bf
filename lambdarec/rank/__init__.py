"""Merge and re-rank: the one function serving and replay share."""

from lambdarec.rank.merge import SOURCES, MergeInput, MergeWeights, Ranked, fresh_vector, merge, merge_many

__all__ = ["SOURCES", "MergeInput", "MergeWeights", "Ranked", "fresh_vector", "merge", "merge_many"]
