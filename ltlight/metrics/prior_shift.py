"""Error under a shifted test prior: the test-agnostic protocol of SADE (Zhang et al., NeurIPS
2022) and BalPoE (Sarkar et al., CVPR 2023), from per-class error alone.

A balanced test split measures the per-class error ``e_j``; a test set whose class prior is ``q``
has error ``Σ_j q_j · e_j``. :func:`shifted_priors` gives the protocol's priors with the training
profile's (exponential) shape: forward long-tailed (the training order, head most frequent)
with ``ρ = 50 … 2``, uniform, and backward long-tailed (tail most frequent) with ``ρ = 2 … 50``.
A model that knows ``q`` adjusts to it post hoc (:meth:`ltlight.LongTailModule.
set_logit_adjustment` with ``target_prior=q``: ``z − log π + log q``, Menon et al., ICLR 2021).
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ltlight.checks import check_range

#: The protocol's imbalance ratios of the shifted test priors (each forward and backward).
RATIOS = (50, 25, 10, 5, 2)


def shifted_prior(class_counts: Sequence[int], ratio: float, backward: bool = False) -> list[float]:
    """The test prior ``q`` with ratio ``ρ = max q / min q``, exponential in the class's rank.

    ``q_j ∝ ρ^{−r_j / (C − 1)}``, ``r_j`` the rank of class ``j`` by training count (0 the most
    frequent; ties by index) — or, ``backward``, ``C − 1 − r_j``. ``ρ = 1`` is uniform.
    """
    check_range("ratio", ratio, 1.0)
    counts = np.asarray(class_counts, dtype=np.float64)
    rank = np.empty(len(counts))
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
    if backward:
        rank = len(counts) - 1 - rank
    q = float(ratio) ** (-rank / max(len(counts) - 1, 1))
    return (q / q.sum()).tolist()


def shifted_priors(
    class_counts: Sequence[int], ratios: Sequence[float] = RATIOS
) -> list[tuple[str, list[float]]]:
    """``(label, q)`` from forward-LT ``ρ = max(ratios)`` through uniform to backward-LT, e.g.
    ``"forward 50"``, ..., ``"uniform"``, ..., ``"backward 50"``."""
    ordered = sorted(ratios, reverse=True)
    forward = [(f"forward {r:g}", shifted_prior(class_counts, r)) for r in ordered]
    backward = [(f"backward {r:g}", shifted_prior(class_counts, r, True)) for r in ordered[::-1]]
    return [*forward, ("uniform", shifted_prior(class_counts, 1.0)), *backward]


def error_under_prior(per_class_error: Sequence[float] | Tensor, prior: Sequence[float]) -> float:
    """``Σ_j q_j · e_j``: the error on a test set with class prior ``q`` (normalised here)."""
    errors = torch.as_tensor(per_class_error, dtype=torch.float64)
    q = torch.as_tensor(prior, dtype=torch.float64)
    if errors.shape != q.shape:
        raise ValueError(
            f"per_class_error and prior must have the same length, got {errors.numel()} and "
            f"{q.numel()}"
        )
    if not bool(torch.all(q >= 0)) or float(q.sum()) <= 0:
        raise ValueError(f"prior must be non-negative with a positive sum, got {q.tolist()}")
    return float((q / q.sum() * errors).sum())
