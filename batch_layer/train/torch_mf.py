"""Matrix factorisation in torch, trained with BPR or sampled-softmax loss on the CPU or a CUDA device.

Every stored (user, item) pair is a positive, seen once per epoch in a seeded random order, its loss weighted by
its confidence ``1 + alpha * weight``. Negatives are drawn uniformly from all items (BPR: one per positive;
softmax: ``batch.torch.negatives`` shared by the mini-batch, accidental hits masked). Embeddings are sparse and
updated with ``SparseAdam``, so a step touches only the rows of its mini-batch. Seeded: the same settings on the
same device and thread count give the same factors.

This module imports torch; :func:`batch_layer.train.train` imports it only when ``batch.model = "torch"``.

Example
-------
>>> import scipy.sparse as sp
>>> from lambdarec.settings import BatchSettings
>>> m = sp.random(30, 20, density=0.2, format="csr", dtype=np.float32, random_state=0)
>>> s = BatchSettings(train={"model": "torch", "factors": 8, "iterations": 1}, device="cpu")
>>> train_torch(m, s, show_progress=False).item_factors.shape
(20, 8)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from batch_layer.train.device import resolve_device, resolve_threads
from lambdarec.model.factors import Factors, solver_terms
from lambdarec.settings import BatchSettings

# Standard deviation of the initial embeddings.
INIT_STD = 0.1


def _device(requested: str) -> torch.device:
    resolved = resolve_device(requested)
    if resolved == "cuda" and not torch.cuda.is_available():
        if requested == "cuda":
            raise RuntimeError("batch.device = 'cuda' but torch sees no CUDA device; use 'cpu' or 'auto'")
        resolved = "cpu"
    return torch.device(resolved)


def _embedding(rows: int, factors: int, generator: torch.Generator, device: torch.device) -> torch.nn.Embedding:
    # Initialised on the CPU generator so a seed gives the same start on every device.
    weight = torch.randn(rows, factors, generator=generator) * INIT_STD
    return torch.nn.Embedding.from_pretrained(weight, freeze=False, sparse=True).to(device)


def _bpr_loss(
    users: torch.nn.Embedding,
    items: torch.nn.Embedding,
    u: torch.Tensor,
    i: torch.Tensor,
    n_items: int,
    gen: torch.Generator,
    settings: BatchSettings,
) -> tuple[torch.Tensor, torch.Tensor]:
    j = torch.randint(0, n_items, i.shape, generator=gen, device=i.device)
    xu, yi, yj = users(u), items(i), items(j)
    per_pair = -F.logsigmoid((xu * (yi - yj)).sum(1))
    norms = xu.pow(2).sum(1) + yi.pow(2).sum(1) + yj.pow(2).sum(1)
    return per_pair, norms


def _softmax_loss(
    users: torch.nn.Embedding,
    items: torch.nn.Embedding,
    u: torch.Tensor,
    i: torch.Tensor,
    n_items: int,
    gen: torch.Generator,
    settings: BatchSettings,
) -> tuple[torch.Tensor, torch.Tensor]:
    neg = torch.randint(0, n_items, (settings.torch.negatives,), generator=gen, device=i.device)
    xu, yi, yn = users(u), items(i), items(neg)
    positive = (xu * yi).sum(1, keepdim=True)
    negative = (xu @ yn.T).masked_fill(neg[None, :] == i[:, None], float("-inf"))
    logits = torch.cat([positive, negative], dim=1)
    per_pair = F.cross_entropy(logits, torch.zeros(len(u), dtype=torch.long, device=u.device), reduction="none")
    norms = xu.pow(2).sum(1) + yi.pow(2).sum(1) + yn.pow(2).sum(1).mean()
    return per_pair, norms


def train_torch(matrix: sp.csr_matrix, settings: BatchSettings, *, show_progress: bool = True) -> Factors:
    """Fit torch MF on ``matrix`` (users x items, weights) with ``settings.torch.loss``; see the module docstring.

    Uses ``factors``, ``iterations`` (epochs), ``learning_rate``, ``regularization``, ``alpha``,
    ``torch_loss``, ``torch_negatives``, ``torch_batch_size``, ``seed``, ``threads`` and ``device``.
    """
    device = _device(settings.device)
    n_users, n_items = matrix.shape
    gen_cpu = torch.Generator().manual_seed(settings.seed)
    gen = gen_cpu if device.type == "cpu" else torch.Generator(device=device).manual_seed(settings.seed)
    threads_before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(resolve_threads(settings.threads))
    try:
        users = _embedding(n_users, settings.train.factors, gen_cpu, device)
        items = _embedding(n_items, settings.train.factors, gen_cpu, device)
        row = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(matrix.indptr))
        pos_u = torch.as_tensor(row, device=device)
        pos_i = torch.as_tensor(matrix.indices.astype(np.int64), device=device)
        conf = torch.as_tensor(1.0 + settings.train.alpha * matrix.data.astype(np.float32), device=device)
        loss_fn = _bpr_loss if settings.torch.loss == "bpr" else _softmax_loss
        optimizer = torch.optim.SparseAdam([users.weight, items.weight], lr=settings.train.learning_rate)
        batch = settings.torch.batch_size
        steps = -(-len(row) // batch)
        with tqdm(
            total=settings.train.iterations * steps,
            desc=f"torch {settings.torch.loss}",
            disable=not show_progress,
            unit="batch",
        ) as progress:
            for _epoch in range(settings.train.iterations):
                order = torch.randperm(len(row), generator=gen, device=device)
                for step, start in enumerate(range(0, len(row), batch)):
                    pick = order[start : start + batch]
                    per_pair, norms = loss_fn(users, items, pos_u[pick], pos_i[pick], n_items, gen, settings)
                    weight = conf[pick]
                    loss = ((per_pair + settings.train.effective_regularization * norms) * weight).sum() / weight.sum()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    progress.update(1)
                    if show_progress and step % 50 == 0:
                        progress.set_postfix(loss=f"{loss.item():.4f}")
        user_factors = users.weight.detach().to("cpu").numpy().astype(np.float32)
        item_factors = items.weight.detach().to("cpu").numpy().astype(np.float32)
    finally:
        torch.set_num_threads(threads_before)
    terms = solver_terms(
        item_factors, regularization=settings.train.effective_regularization, alpha=settings.train.alpha, exact=False
    )
    return Factors(user_factors=user_factors, item_factors=item_factors, solver=terms, model="torch")
