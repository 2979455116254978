"""RNGState: the global random generators' states in every checkpoint, for exact resume.

Lightning 2.6 does not checkpoint the global RNG states (``torch``, CUDA, NumPy, Python's
``random``), and dropout, mixup's λ and a sampler without its own generator draw from them: a run
resumed without them continues differently. This callback saves them — every rank's, since each
rank's generators have diverged — through Lightning's callback ``state_dict`` and restores this
rank's on resume. :class:`~ltlight.LongTailModule` adds one to every run (``configure_callbacks``).
"""

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from typing_extensions import override


def _numpy_state_to_primitives(state: tuple) -> tuple:
    """NumPy's RNG state without arrays, so checkpoints load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached_gaussian = state
    return (name, keys.tolist(), int(pos), int(has_gauss), float(cached_gaussian))


class RNGState(L.Callback):
    """Save every rank's RNG states in checkpoints; restore this rank's when a fit resumes.

    The saved state is ``{"per_rank": [states of rank 0, rank 1, ...]}``; a run resumed on
    another number of processes takes ``rank % saved ranks`` (not the same run, but still
    deterministic).

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[RNGState()])
    """

    def __init__(self) -> None:
        self._rank, self._world_size = 0, 1

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._rank, self._world_size = trainer.global_rank, trainer.world_size

    @override
    def state_dict(self) -> dict[str, Any]:
        # Lightning asks every rank for the state and writes rank 0's: gather them here.
        states = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": _numpy_state_to_primitives(np.random.get_state()),  # noqa: NPY002
            "python": random.getstate(),
        }
        per_rank: list[Any] = [states]
        if self._world_size > 1 and torch.distributed.is_initialized():
            per_rank = [None] * self._world_size
            torch.distributed.all_gather_object(per_rank, states)
        return {"per_rank": per_rank}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        per_rank = state_dict["per_rank"]
        states = per_rank[self._rank % len(per_rank)]
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        name, keys, pos, has_gauss, cached_gaussian = states["numpy"]
        np.random.set_state(  # noqa: NPY002
            (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian)
        )
        random.setstate(states["python"])
