"""Training: shapes, seeded determinism, and that each trainer learns a planted structure."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from batch_layer.quality_metrics import evaluate_gate
from batch_layer.train import check_matrix, train
from lambdarec.settings import BatchSettings, TrainSettings
from tests.numeric import assert_factors_close

HAS_TORCH = importlib.util.find_spec("torch") is not None


def settings(**kw) -> BatchSettings:
    """Small, seeded, one thread on the CPU; keyword arguments of ``[batch.train]`` go there."""
    train = {"factors": 16, "iterations": 8} | {k: v for k, v in kw.items() if k in TrainSettings.model_fields}
    rest = {"device": "cpu", "threads": 1, "seed": 7} | {k: v for k, v in kw.items() if k not in train}
    return BatchSettings(train=train, **rest)


@pytest.mark.parametrize("model, width", [("als", 16), ("bpr", 17)])
def test_implicit_trainers_give_float32_factors_of_the_right_shape(planted_data, model: str, width: int) -> None:
    train_m, _ = planted_data
    f = train(train_m, settings(model=model, iterations=2), show_progress=False)
    assert f.user_factors.shape == (train_m.shape[0], width) and f.user_factors.dtype == np.float32
    assert f.item_factors.shape == (train_m.shape[1], width) and f.item_factors.dtype == np.float32
    assert f.solver.yty.shape == (width, width) and f.solver.exact == (model == "als")
    assert f.model == model and f.factors == width


@pytest.mark.parametrize("model", ["als", "bpr"])
def test_a_seed_gives_the_same_factors_and_another_seed_different_ones(planted_data, model: str) -> None:
    train_m, _ = planted_data
    a = train(train_m, settings(model=model, iterations=2), show_progress=False)
    b = train(train_m, settings(model=model, iterations=2), show_progress=False)
    c = train(train_m, settings(model=model, iterations=2, seed=8), show_progress=False)
    assert_factors_close(a.user_factors, b.user_factors)
    assert_factors_close(a.item_factors, b.item_factors)
    assert np.abs(a.item_factors - c.item_factors).max() > 1e-2  # another seed: another model, not rounding


def test_als_is_deterministic_on_every_core(planted_data) -> None:
    train_m, _ = planted_data
    a = train(train_m, settings(threads=0, iterations=2), show_progress=False)
    b = train(train_m, settings(threads=0, iterations=2), show_progress=False)
    assert_factors_close(a.item_factors, b.item_factors)


def test_als_beats_popularity_on_planted_clusters(planted_data) -> None:
    train_m, holdout = planted_data
    f = train(train_m, settings(iterations=10, regularization=0.1), show_progress=False)
    gate = evaluate_gate(f.user_factors, f.item_factors, train_m, holdout, 10, threads=1)
    assert gate.model.recall > gate.popularity.recall + 0.2


def test_check_matrix_names_what_is_wrong() -> None:
    with pytest.raises(TypeError, match=r"scipy\.sparse"):
        check_matrix(np.ones((2, 2)))
    with pytest.raises(ValueError, match=">= 0"):
        check_matrix(sp.csr_matrix(np.array([[-1.0]])))
    with pytest.raises(ValueError, match="at least one"):
        check_matrix(sp.csr_matrix((0, 3)))
    dup = sp.csr_matrix((np.ones(2, np.float32), np.array([1, 1]), np.array([0, 2])), shape=(1, 3))
    assert check_matrix(dup).toarray().tolist() == [[0.0, 2.0, 0.0]]


def test_explicit_cuda_without_support_is_a_clear_error(planted_data, monkeypatch) -> None:
    import batch_layer.train.implicit_mf as implicit_mf

    monkeypatch.setattr(implicit_mf, "resolve_device", lambda requested: "cuda")
    with pytest.raises(RuntimeError, match=r"batch\.device = 'cuda'"):
        train(planted_data[0], settings(device="cuda"), show_progress=False)


def test_implicit_training_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np, scipy.sparse as sp\n"
        "from batch_layer.train import train\nfrom batch_layer.candidates import iter_candidates\n"
        "from lambdarec.settings import BatchSettings\n"
        "m = sp.random(30, 20, density=0.2, format='csr', dtype=np.float32, random_state=0)\n"
        "f = train(m, BatchSettings(train={'factors': 4, 'iterations': 1}, device='auto'), show_progress=False)\n"
        "list(iter_candidates(f.user_factors, f.item_factors, m, 5, 8))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (make setup-dev installs the torch extra)")
@pytest.mark.parametrize("loss", ["bpr", "softmax"])
def test_torch_trainer_learns_planted_clusters(planted_data, loss: str) -> None:
    train_m, holdout = planted_data
    s = settings(
        model="torch",
        torch={"loss": loss, "batch_size": 512, "negatives": 32},
        iterations=25,
        regularization=1e-4,
        learning_rate=0.05,
    )
    f = train(train_m, s, show_progress=False)
    assert f.user_factors.shape == (train_m.shape[0], 16) and f.item_factors.dtype == np.float32
    assert not f.solver.exact
    gate = evaluate_gate(f.user_factors, f.item_factors, train_m, holdout, 10, threads=1)
    assert gate.model.recall > gate.popularity.recall + 0.2, gate


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (make setup-dev installs the torch extra)")
def test_torch_trainer_is_seeded(planted_data) -> None:
    train_m, _ = planted_data
    s = settings(model="torch", iterations=2, torch={"batch_size": 1024})
    a = train(train_m, s, show_progress=False)
    b = train(train_m, s, show_progress=False)
    assert_factors_close(a.item_factors, b.item_factors)
