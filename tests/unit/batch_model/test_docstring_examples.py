"""The examples in the model side's docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib
import importlib.util

import pytest

MODULES = [
    "lambdarec.model.topk",
    "lambdarec.model.scoring",
    "lambdarec.model.exclusions",
    "lambdarec.model.topk_threshold",
    "lambdarec.model.survivors",
    "lambdarec.model.foldin",
    "lambdarec.model.factors",
    "batch_layer.train",
    "batch_layer.train.device",
    "batch_layer.train.implicit_mf",
    "batch_layer.candidates",
    "batch_layer.model_index",
    "batch_layer.neighbours",
    "batch_layer.popularity",
    "batch_layer.quality_metrics",
]
if importlib.util.find_spec("torch") is not None:
    MODULES.append("batch_layer.train.torch_mf")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
