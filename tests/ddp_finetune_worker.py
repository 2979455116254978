"""AdaptFormer fine-tuning of a frozen tiny ViT under two-process DDP (gloo); see test_finetune.py.

``python tests/ddp_finetune_worker.py OUT_DIR BASE_FILE``: Lightning's DDP launcher runs this file
again for rank 1. Two epochs on Digits-LT (8×8 grey: a one-block ViT with 4-pixel patches) from
the pretrained weights in BASE_FILE, then ``trainer.save_checkpoint(OUT_DIR/peft.ckpt)``. Each
rank writes ``OUT_DIR/finetune_rank<r>.json``: SHA-256 digests of its trained and of its frozen
tensors; rank 0 also saves its backbone's state (``finetuned_backbone.pt``).
"""

import hashlib
import json
import sys
from pathlib import Path

import lightning as L
import timm
import torch
from safetensors.torch import save_file
from trainers import ddp_trainer

from ltlight import LongTailModule
from ltlight.data import DigitsLTDataModule
from ltlight.finetune import AdaptFormer
from ltlight.losses import LogitAdjustedLoss
from ltlight.models import timm_backbone

VIT = {"img_size": 8, "patch_size": 4, "in_chans": 1, "depth": 1}
EPOCHS = 2


def save_base(path: Path) -> None:
    """The "pretrained" weights: a random tiny ViT, seeded."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10, **VIT)
    save_file(model.state_dict(), str(path))


def make_module(base_file: str) -> LongTailModule:
    backbone = timm_backbone("vit_tiny_patch16_224", 10, checkpoint_path=base_file, **VIT)
    return LongTailModule(
        backbone,
        loss=LogitAdjustedLoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        finetune=AdaptFormer(),
    )


def digest(tensors) -> str:
    sha = hashlib.sha256()
    for name, tensor in tensors:
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def main(out_dir: Path, base_file: str) -> None:
    L.seed_everything(0)
    module = make_module(base_file)
    trainer = ddp_trainer(out_dir, max_epochs=EPOCHS)
    trainer.fit(module, datamodule=DigitsLTDataModule(batch_size=32, seed=3))
    trainer.save_checkpoint(out_dir / "peft.ckpt")
    named = list(module.backbone.named_parameters())
    report = {
        "trained": digest((n, p) for n, p in named if p.requires_grad),
        "frozen": digest((n, p) for n, p in named if not p.requires_grad),
    }
    (out_dir / f"finetune_rank{trainer.global_rank}.json").write_text(json.dumps(report))
    if trainer.global_rank == 0:
        torch.save(module.backbone.state_dict(), out_dir / "finetuned_backbone.pt")
    trainer.strategy.barrier()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
