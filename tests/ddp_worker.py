"""Two-process DDP training on the CPU (gloo) that writes what each rank saw; see test_ddp.py.

``python tests/ddp_worker.py OUT_DIR``: Lightning's DDP launcher runs this file again for rank 1.
LDAM on Digits-LT with deferred re-weighting from epoch 1 and deferred re-sampling from epoch 2,
three epochs, then one ``trainer.validate``, a checkpoint, and one more epoch resumed from it.
The test split has 499 images (250 + 249 on the two ranks, in batches of 83: 4 and 3 batches), so
evaluation shards differ in size and in number of batches. Each rank writes
``OUT_DIR/rank<r>.json``: the class counts its loss and datamodule hold, the LDAM margins, and per
epoch the loss weight, the sampler's mode, this rank's sample indices and the labels of the
batches it trained on; the validation metrics after every epoch and from ``validate``; digests of
its RNG states when the checkpoint was saved and when the resumed run started. Rank 0 also saves
the final weights.
"""

import hashlib
import json
import random
import sys
from pathlib import Path

import lightning as L
import numpy as np
import torch
from trainers import ddp_trainer

from ltlight import LongTailModule
from ltlight.callbacks import DeferredResampling, DeferredReweighting, PerClassReport
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


TEST_IMAGES = 499


class OddDigitsLT(DigitsLTDataModule):
    """Digits-LT with a test split of 499 images: not divisible by the number of processes."""

    def load_split(self, train: bool):
        images, labels = super().load_split(train)
        return (images, labels) if train else (images[:TEST_IMAGES], labels[:TEST_IMAGES])


def make_datamodule() -> DigitsLTDataModule:
    return OddDigitsLT(batch_size=64, eval_batch_size=83, augment=True, seed=5)


def rng_digest() -> str:
    """One digest of this process's torch, NumPy and Python RNG states."""
    state = (
        torch.get_rng_state().numpy().tobytes()
        + np.random.get_state()[1].tobytes()  # noqa: NPY002
        + repr(random.getstate()).encode()
    )
    return hashlib.sha256(state).hexdigest()


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


class RankRandomness(L.Callback):
    """Each rank draws a different number of random numbers per batch, so their states differ
    (as dropout or augmentation make them differ in real runs)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        torch.rand(trainer.global_rank + 1)
        np.random.rand(trainer.global_rank + 1)  # noqa: NPY002
        random.random()
        if trainer.global_rank:
            random.random()


class RestoredRandomness(L.Callback):
    """The RNG digest when the resumed run starts training (after the checkpoint is restored)."""

    digest: str | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.digest = rng_digest()


def main(out_dir: Path) -> None:
    L.seed_everything(0)
    module, datamodule, recorder = make_module(), make_datamodule(), Recorder()
    trainer = ddp_trainer(
        out_dir,
        max_epochs=EPOCHS,
        callbacks=[recorder, RankRandomness(), PerClassReport(figures=False, table=False)],
    )
    trainer.fit(module, datamodule=datamodule)
    # Saved before validate: Lightning's DDP set-up re-seeds every rank alike at each new stage.
    checkpoint = out_dir / "fit.ckpt"
    saved_digest = rng_digest()
    trainer.save_checkpoint(checkpoint)
    (validated,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    restored = RestoredRandomness()
    resumed = L.Trainer(
        max_epochs=EPOCHS + 1,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        callbacks=[restored],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=1,
        limit_val_batches=0,
        default_root_dir=out_dir,
    )
    resumed.fit(make_module(), datamodule=make_datamodule(), ckpt_path=checkpoint)

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
        "rng_at_save": saved_digest,
        "rng_at_resume": restored.digest,
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    if rank == 0:
        torch.save(module.state_dict(), out_dir / "weights.pt")
    resumed.strategy.barrier()  # rank 0's weights are written before anyone reports done


if __name__ == "__main__":
    main(Path(sys.argv[1]))
