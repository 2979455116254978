"""Multi-label training, threshold tuning and validation under two-process DDP (gloo); see
test_ddp_multilabel.py.

``python tests/ddp_multilabel_worker.py OUT_DIR``: Lightning's DDP launcher runs this file again
for rank 1. Two epochs of BCE on the in-memory multi-label tensors (``multilabel_data``) with a
validation split of 151 images (odd: the ranks' shards hold 76 and 75), thresholds tuned at the
end of ``fit``, then one ``trainer.validate``. Each rank writes ``OUT_DIR/multilabel_rank<r>.json``
with the validation metrics and the thresholds; rank 0 saves the weights (``weights.pt``).
"""

import json
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from multilabel_data import FEATURES, C, MultiLabelTensorDataModule
from torch import nn
from torch.utils.data import DataLoader
from trainers import ddp_trainer

from ltlight import LongTailModule
from ltlight.callbacks import ThresholdTuning
from ltlight.losses import BinaryCrossEntropyLoss

VAL_IMAGES = 151


class UnpaddedValidation(MultiLabelTensorDataModule):
    """Validation shards without padding. Lightning gives a plain DataLoader a
    ``DistributedSampler``, which repeats an image to even out the shards (76 + 76 here): exact
    metrics need a sampler that does not (ltlight's own loaders never pad evaluation shards)."""

    def val_dataloader(self) -> DataLoader:
        sampler = UnrepeatedDistributedSampler(self.val_set, shuffle=False)
        return DataLoader(self.val_set, batch_size=64, sampler=sampler)


def make_module() -> LongTailModule:
    torch.manual_seed(0)
    return LongTailModule(
        nn.Linear(FEATURES, C),
        loss=BinaryCrossEntropyLoss(),
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
    )


def main(out_dir: Path) -> None:
    L.seed_everything(0)
    module = make_module()
    trainer = ddp_trainer(out_dir, max_epochs=2, callbacks=[ThresholdTuning()])
    data = UnpaddedValidation(val_size=VAL_IMAGES, batch_size=16)
    trainer.fit(module, datamodule=data)
    results = trainer.validate(module, datamodule=data, verbose=False)[0]
    rank = trainer.global_rank
    report = {"validate": results, "thresholds": module.label_decision.thresholds.tolist()}
    (out_dir / f"multilabel_rank{rank}.json").write_text(json.dumps(report))
    if rank == 0:
        torch.save(module.backbone.state_dict(), out_dir / "weights.pt")
    trainer.strategy.barrier()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
