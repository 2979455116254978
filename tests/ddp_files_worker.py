"""Two-process DDP (gloo, CPU) over image files, class-balanced from epoch 1; see test_ddp_files.py.

``python tests/ddp_files_worker.py OUT_DIR IMAGE_FOLDER [DECODER]``: Lightning's DDP launcher runs
this file again for rank 1. Each rank trains on ``IMAGE_FOLDER/train`` with ImageFolderLTDataModule
(one decoding worker, or DALI thread, per rank) and writes ``OUT_DIR/rank<r>.json``: the class
counts its datamodule and module hold, and per epoch the sampler's mode, this rank's indices, the
labels it trained on and the sum of each batch's images.
"""

import json
import sys
from pathlib import Path

import lightning as L
import torch
from torch import nn
from trainers import ddp_trainer

from ltlight import LongTailModule
from ltlight.callbacks import DeferredResampling
from ltlight.data import ImageFolderLTDataModule

EPOCHS = 2
DRS_EPOCH = 1


def make_datamodule(folder: str, decoder: str = "pil") -> ImageFolderLTDataModule:
    return ImageFolderLTDataModule(
        train=f"{folder}/train", test=f"{folder}/test", batch_size=4, eval_batch_size=8,
        num_workers=1, image_size=16, resize=20, seed=5, decoder=decoder,
    )  # fmt: skip


def make_module() -> LongTailModule:
    backbone = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 10))
    return LongTailModule(
        backbone,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05),
        callbacks=[DeferredResampling(start_epoch=DRS_EPOCH)],
    )


class Recorder(L.Callback):
    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            sampler = trainer.train_dataloader.sampler
            self.epochs.append(
                {
                    "class_balanced": sampler.class_balanced,
                    "indices": sampler.indices().tolist(),
                    "labels": [],
                    "image_sums": [],
                }
            )
        self.epochs[-1]["labels"] += batch[1].tolist()
        self.epochs[-1]["image_sums"].append(batch[0].double().sum().item())


def main(out_dir: Path, folder: str, decoder: str) -> None:
    L.seed_everything(0)
    module, datamodule, recorder = make_module(), make_datamodule(folder, decoder), Recorder()
    trainer = ddp_trainer(out_dir, max_epochs=EPOCHS, callbacks=[recorder])
    trainer.fit(module, datamodule=datamodule)
    report = {
        "global_rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "datamodule_class_counts": list(datamodule.class_counts),
        "module_class_counts": list(module.class_counts),
        "epochs": recorder.epochs,
    }
    (out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "pil")
