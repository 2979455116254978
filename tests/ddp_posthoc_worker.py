"""Post-hoc calibration fitted under two-process DDP (gloo); see test_ddp.py.

``python tests/ddp_posthoc_worker.py OUT_DIR``: Lightning's DDP launcher runs this file again for
rank 1. Five epochs of cross-entropy on Digits-LT with a validation split of 49 images (odd: the
ranks' shards hold 25 and 24), then post-hoc logit adjustment and temperature scaling fitted at
the end of ``fit``. Each rank writes ``OUT_DIR/posthoc_rank<r>.json`` with what it fitted; rank 0
saves the weights it fitted them for (``posthoc_weights.pt``, calibration reset).
"""

import json
import sys
from pathlib import Path

import lightning as L
import torch
from trainers import ddp_trainer

from ltlight import LongTailModule
from ltlight.callbacks import PostHocLogitAdjustment, TemperatureScaling
from ltlight.data import DigitsLTDataModule
from ltlight.models import DigitsNet

VAL_IMAGES = 49
EPOCHS = 5


class OddValidationDigitsLT(DigitsLTDataModule):
    """Digits-LT whose validation split has an odd number of images."""

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.val_data is not None and len(self.val_data[1]) > VAL_IMAGES:
            self.val_data = (self.val_data[0][:VAL_IMAGES], self.val_data[1][:VAL_IMAGES])


def make_datamodule() -> DigitsLTDataModule:
    return OddValidationDigitsLT(batch_size=64, eval_batch_size=16, val_per_class=5, seed=3)


def make_module() -> LongTailModule:
    return LongTailModule(
        DigitsNet(), optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)
    )


def main(out_dir: Path) -> None:
    L.seed_everything(0)
    module = make_module()
    trainer = ddp_trainer(
        out_dir,
        max_epochs=EPOCHS,
        callbacks=[PostHocLogitAdjustment(), TemperatureScaling()],
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=make_datamodule())
    rank = trainer.global_rank
    fitted = {"temperature": module.temperature, "tau": module.logit_adjustment_tau}
    (out_dir / f"posthoc_rank{rank}.json").write_text(json.dumps(fitted))
    if rank == 0:
        module.temperature = 1.0
        module.set_logit_adjustment(0.0)
        torch.save(module.state_dict(), out_dir / "posthoc_weights.pt")
    trainer.strategy.barrier()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
