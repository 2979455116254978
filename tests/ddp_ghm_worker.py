"""GHM-C in two gloo processes, each with half of every global batch; see test_ddp.py.

``python tests/ddp_ghm_worker.py OUT_DIR``: spawns 2 processes; each runs ``STEPS`` training
steps of ``GHMCLoss(momentum=0.75, reduction="none")`` on its half (rows ``r·HALF …``) of the
seeded global batches from :func:`global_batches`, then one in eval mode, and saves its per-step
EMA counts and per-element losses to ``OUT_DIR/ghm_rank<r>.pt``.
"""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ltlight.losses import GHMCLoss

WORLD_SIZE, HALF, CLASSES, STEPS = 2, 16, 5, 3


def global_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(WORLD_SIZE * HALF, CLASSES, generator=gen) * 3,
            torch.randint(0, CLASSES, (WORLD_SIZE * HALF,), generator=gen),
        )
        for _ in range(STEPS + 1)
    ]


def run(rank: int, out_dir: str, port: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    loss = GHMCLoss(momentum=0.75, reduction="none")
    rows = slice(rank * HALF, (rank + 1) * HALF)
    ema, values = [], []
    for step, (logits, target) in enumerate(global_batches()):
        loss.train(step < STEPS)  # the last batch in eval mode: no collective, no EMA update
        values.append(loss(logits[rows], target[rows]))
        ema.append(loss.ema_counts.clone())
    torch.save({"ema": ema, "values": values}, Path(out_dir) / f"ghm_rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1], sys.argv[2]), nprocs=WORLD_SIZE)
