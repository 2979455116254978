"""Two-process DDP training on the CPU (gloo) that writes what each rank saw; see test_ddp.py.

``python tests/ddp_worker.py OUT_DIR``: Lightning's DDP launcher runs this file again for rank 1.
LDAM on Digits-LT with deferred re-weighting from epoch 1 and deferred re-sampling from epoch 2,
three epochs, then one ``trainer.validate``. Each rank writes ``OUT_DIR/rank<r>.json``: the class
counts its loss and datamodule hold, the LDAM margins, and per epoch the loss weight, the sampler's
mode, this rank's sample indices and the labels of the batches it trained on; the validation
metrics after every epoch and from ``validate``. Rank 0 also saves the final weights.
"""

import json
import sys
from pathlib import Path

import lightning as L
import torch

from ltlight import LongTailModule
from ltlight.callbacks import DeferredResampling, DeferredReweighting
from ltlight.data import DigitsLTDataModule
from ltlight.losses import LDAMLoss
from ltlight.models import DigitsNet

EPOCHS = 3
DRW_EPOCH = 1
DRS_EPOCH = 2


def make_module() -> LongTailModule:
    return LongTailModule(
        DigitsNet(normed=True),
        loss=LDAMLoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        callbacks=[DeferredReweighting(start_epoch=DRW_EPOCH), DeferredResampling(DRS_EPOCH)],
    )


def make_datamodule() -> DigitsLTDataModule:
    return DigitsLTDataModule(batch_size=64, eval_batch_size=100, augment=True, seed=5)


def floats(metrics) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items() if name.startswith("val/")}


class Recorder(L.Callback):
    """What this rank trains on; read at each batch, after every epoch-start hook has run."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self.validation: list[dict[str, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            loader = trainer.train_dataloader
            weight = pl_module.loss.weight
            self.epochs.append(
                {
                    "epoch": trainer.current_epoch,
                    "loss_weight": None if weight is None else weight.tolist(),
                    "class_balanced": loader.sampler.class_balanced,
                    "indices": loader.sampler.indices().tolist(),
                    "labels": [],
                }
            )
        self.epochs[-1]["labels"] += batch[1].tolist()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":
            self.validation.append(floats(trainer.callback_metrics))


def main(out_dir: Path) -> None:
    L.seed_everything(0)
    module, datamodule, recorder = make_module(), make_datamodule(), Recorder()
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        callbacks=[recorder],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=out_dir,
    )
    trainer.fit(module, datamodule=datamodule)
    (validated,) = trainer.validate(module, datamodule=datamodule, verbose=False)

    rank = trainer.global_rank
    report = {
        "global_rank": rank,
        "world_size": trainer.world_size,
        "datamodule_class_counts": list(datamodule.class_counts),
        "loss_class_counts": [int(n) for n in module.loss.class_counts],
        "module_class_counts": list(module.class_counts),
        "margins": module.loss.margins.tolist(),
        "epochs": recorder.epochs,
        "validation_during_fit": recorder.validation,
        "validate": floats(validated),
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    if rank == 0:
        torch.save(module.state_dict(), out_dir / "weights.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
