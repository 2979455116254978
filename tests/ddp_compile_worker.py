"""Two-process DDP (gloo, CPU) with ``LongTailModule(compile=True)``; see test_compile.py.

``python tests/ddp_compile_worker.py OUT_DIR``: Lightning's DDP launcher runs this file again for
rank 1. Each rank trains the compiled backbone on its shard of Digits-LT (no augmentation, so a
sample is its pixels) and writes ``OUT_DIR/rank<r>.pt``: its final weights and whether the
backbone ran compiled.
"""

import sys
from pathlib import Path

import torch
from torch import nn
from trainers import ddp_trainer

from ltlight import LongTailModule
from ltlight.data import DigitsLTDataModule

EPOCHS = 2
BATCH_PER_RANK = 16


def make_backbone() -> nn.Module:
    """Without BatchNorm: each rank's batch statistics would differ from the whole batch's."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )  # fmt: skip


def make_module(compile: bool) -> LongTailModule:
    return LongTailModule(
        make_backbone(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        compile=compile,
    )


def make_datamodule(batch_size: int) -> DigitsLTDataModule:
    return DigitsLTDataModule(batch_size=batch_size, augment=False, seed=2)


def main(out_dir: Path) -> None:
    module = make_module(compile=True)
    trainer = ddp_trainer(out_dir, max_epochs=EPOCHS, limit_val_batches=0)
    trainer.fit(module, datamodule=make_datamodule(BATCH_PER_RANK))
    compiled = module.compiled_backbone
    torch.save(
        {
            "state": module.backbone.state_dict(),
            "ran_compiled": compiled.compiled is not None and not compiled.failed,
            "steps": trainer.global_step,
        },
        out_dir / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
