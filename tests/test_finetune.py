"""Fine-tuning methods on a tiny pretrained ViT (and timm's test ResNet), saved and loaded by the
tests through the real path: trainable counts equal a hand count, what is frozen stays
bit-identical through ``fit``, AdaptFormer starts at the pretrained model, checkpoints hold only
what trained and reload to identical predictions; wrong inputs are one-line errors."""

import json
import logging
from pathlib import Path

import lightning as L
import pytest
import timm
import torch
from fake_clip import text_init_arguments
from safetensors.torch import save_file
from test_module import trainer as module_trainer
from torch.utils.data import DataLoader, TensorDataset

from ltlight import LongTailModule
from ltlight.finetune import (
    AdaptFormer,
    BitFit,
    FullFineTuning,
    LayerNormTuning,
    LinearProbe,
    LoRA,
    VisualPromptTuning,
    parameter_counts,
)
from ltlight.finetune.adaptformer import lift_bottleneck
from ltlight.losses import LogitAdjustedLoss
from ltlight.models import timm_backbone

COUNTS = [24, 12, 6, 3]
LIFT_DIGITS = Path(__file__).resolve().parents[1] / "configs" / "digits_lt" / "lift.yaml"
VIT = {"img_size": 32, "depth": 2}
DIM, MLP, CLASSES = 192, 768, len(COUNTS)


class ImagesLT(L.LightningDataModule):
    """32×32 images whose mean colour says the class; long-tailed counts."""

    def __init__(self, batch_size: int = 8) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.class_counts, self.num_classes = list(COUNTS), CLASSES
        labels = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
        colours = torch.randn(CLASSES, 3, 1, 1, generator=generator)
        images = colours[labels] + torch.randn(len(labels), 3, 32, 32, generator=generator)
        self.train_set = TensorDataset(images, labels)
        self.val_set = TensorDataset(images[::3], labels[::3])
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=16)

    test_dataloader = predict_dataloader = val_dataloader


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=CLASSES, **VIT)
    path = tmp_path_factory.mktemp("weights") / "vit.safetensors"
    save_file(model.state_dict(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=CLASSES)
    path = tmp_path_factory.mktemp("weights") / "resnet.pth"
    torch.save(model.state_dict(), path)
    return str(path)


def vit(path: str, **kwargs):
    torch.manual_seed(1)
    return timm_backbone("vit_tiny_patch16_224", CLASSES, checkpoint_path=path, **VIT, **kwargs)


def module(backbone, finetune, **kwargs) -> LongTailModule:
    return LongTailModule(
        backbone,
        loss=LogitAdjustedLoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        finetune=finetune,
        **kwargs,
    )


def trainer(tmp_path, **kwargs) -> L.Trainer:
    """test_module's trainer (CPU, deterministic, no logger), one epoch unless told."""
    return module_trainer(tmp_path, **{"max_epochs": 1, **kwargs})


HEAD = DIM * CLASSES + CLASSES
BIASES_PER_BLOCK = DIM + 3 * DIM + DIM + DIM + MLP + DIM  # norm1, qkv, proj, norm2, fc1, fc2
HAND_COUNTS = {
    "LinearProbe": HEAD,
    "BitFit": HEAD + 2 * BIASES_PER_BLOCK + DIM + DIM,  # + patch embedding and final norm
    "LayerNormTuning": HEAD + (2 * 2 + 1) * 2 * DIM,  # two per block and the final one
    "LoRA": HEAD + 2 * (4 * DIM + 3 * DIM * 4),  # A: r×D, B: 3D×r on each qkv
    # LayerNorm, W_down and b_down, W_up and b_up, the scale s
    "AdaptFormer": HEAD + 2 * (2 * DIM + DIM * 8 + 8 + 8 * DIM + DIM + 1),
    "VisualPromptTuning": HEAD + 2 * 5 * DIM,  # deep: 5 tokens before each of the 2 blocks
}
METHODS = {
    "LinearProbe": LinearProbe(),
    "BitFit": BitFit(),
    "LayerNormTuning": LayerNormTuning(),
    "LoRA": LoRA(rank=4, alpha=8.0),
    "AdaptFormer": AdaptFormer(bottleneck=8),
    "VisualPromptTuning": VisualPromptTuning(length=5, deep=True),
}


@pytest.mark.parametrize("name", list(HAND_COUNTS))
def test_trainable_counts_equal_a_hand_count(vit_file, name):
    finetuned = module(vit(vit_file), type(METHODS[name])(**_arguments(METHODS[name])))
    trainable, total = parameter_counts(finetuned)
    assert trainable == HAND_COUNTS[name]
    base = sum(p.numel() for p in vit(vit_file).parameters())
    added = HAND_COUNTS[name] - HEAD if name in ("LoRA", "AdaptFormer", "VisualPromptTuning") else 0
    assert total == base + added


def test_full_fine_tuning_trains_everything(vit_file):
    full = module(vit(vit_file), FullFineTuning())
    base = sum(p.numel() for p in vit(vit_file).parameters())
    assert parameter_counts(full) == (base, base) and full.finetune.frozen_names == []


def _arguments(method) -> dict:
    return {k: v for k, v in vars(method).items() if k != "frozen_names"}


def test_counts_of_selective_methods_add_nothing(vit_file):
    base = sum(p.numel() for p in vit(vit_file).parameters())
    for method in (BitFit(), LayerNormTuning(), LinearProbe()):
        assert parameter_counts(module(vit(vit_file), method))[1] == base


def test_adaptformer_at_step_0_equals_the_base_model(vit_file):
    images = torch.randn(4, 3, 32, 32)
    base = vit(vit_file).eval()
    adapted = AdaptFormer().apply(vit(vit_file)).eval()
    assert len([m for m in adapted.modules() if type(m).__name__ == "Adapter"]) == 2
    with torch.no_grad():
        assert torch.equal(adapted(images), base(images))
    assert lift_bottleneck(1000, 12) == 32 and lift_bottleneck(100, 12) == 4


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "method",
    [
        AdaptFormer(),
        pytest.param(BitFit(), marks=SLOW),
        pytest.param(LoRA(rank=2), marks=SLOW),
        pytest.param(VisualPromptTuning(length=3), marks=SLOW),
    ],
    ids=repr,
)
def test_frozen_tensors_stay_bit_identical_through_fit(vit_file, tmp_path, method, caplog):
    finetuned = module(vit(vit_file), type(method)(**_arguments(method)))
    before = {k: v.clone() for k, v in finetuned.backbone.state_dict().items()}
    trained = {n for n, p in finetuned.backbone.named_parameters() if p.requires_grad}
    with caplog.at_level(logging.INFO):
        trainer(tmp_path).fit(finetuned, datamodule=ImagesLT())
    trainable, total = parameter_counts(finetuned)
    assert f"trains {trainable:,} of {total:,} parameters" in caplog.text
    after = finetuned.backbone.state_dict()
    for name, tensor in before.items():
        if name not in trained:
            assert torch.equal(after[name], tensor), name
    assert any(not torch.equal(after[n], before[n]) for n in trained)


def test_frozen_batchnorm_statistics_stay_the_pretrained_ones(resnet_file, tmp_path):
    backbone = timm_backbone("test_resnet", CLASSES, checkpoint_path=resnet_file)
    finetuned = module(backbone, BitFit())
    buffers = {k: v.clone() for k, v in finetuned.backbone.named_buffers()}
    weights = {k: v.clone() for k, v in backbone.named_parameters() if not k.endswith("bias")}
    trainer(tmp_path).fit(finetuned, datamodule=ImagesLT())
    for name, tensor in finetuned.backbone.named_buffers():
        assert torch.equal(tensor, buffers[name]), name
    for name, tensor in backbone.named_parameters():
        if name in weights and not name.startswith("fc."):
            assert torch.equal(tensor, weights[name]), name


def test_counts_are_logged(vit_file, tmp_path):
    logger = L.pytorch.loggers.CSVLogger(tmp_path)
    trainer(tmp_path, logger=logger).fit(module(vit(vit_file), LinearProbe()), ImagesLT())
    logged = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "finetune/trainable_parameters" in logged and f"{HEAD}" in logged


def _fit_and_save(tmp_path, backbone, method, name):
    finetuned = module(backbone, method)
    fit = trainer(tmp_path)
    fit.fit(finetuned, datamodule=ImagesLT())
    path = tmp_path / f"{name}.ckpt"
    fit.save_checkpoint(path)
    return finetuned, path


@SLOW
@pytest.mark.parametrize("method", [AdaptFormer(), LoRA(rank=2)], ids=repr)
def test_peft_checkpoint_is_small_and_reloads_to_identical_predictions(vit_file, tmp_path, method):
    torch.manual_seed(0)
    finetuned, path = _fit_and_save(
        tmp_path, vit(vit_file), type(method)(**_arguments(method)), "peft"
    )
    _, full = _fit_and_save(tmp_path, vit(vit_file), FullFineTuning(), "full")
    assert path.stat().st_size <= 0.15 * full.stat().st_size
    reloaded = LongTailModule.load_from_checkpoint(
        path,
        backbone=vit(vit_file),
        loss=LogitAdjustedLoss(),
        finetune=type(method)(**_arguments(method)),
    )
    images = torch.randn(6, 3, 32, 32)
    finetuned.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(images), finetuned(images))
    # validate / test / predict from the checkpoint, as `ltlight validate` does
    results = trainer(tmp_path).validate(reloaded, datamodule=ImagesLT(), verbose=False)
    assert 0.0 <= results[0]["val/balanced_error"] <= 1.0


def test_checkpoint_of_another_base_file_is_refused_by_name(vit_file, tmp_path):
    _, path = _fit_and_save(tmp_path, vit(vit_file), AdaptFormer(), "peft")
    other = tmp_path / "other.safetensors"
    torch.manual_seed(5)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=CLASSES, **VIT)
    save_file(model.state_dict(), str(other))
    with pytest.raises(ValueError, match=r"fine-tuned from vit_tiny_patch16_224 from .*vit\.safe"):
        LongTailModule.load_from_checkpoint(
            path, backbone=vit(str(other)), finetune=AdaptFormer(), loss=LogitAdjustedLoss()
        )
    random = timm.create_model("vit_tiny_patch16_224", num_classes=CLASSES, **VIT)
    with pytest.raises(ValueError, match=r"built without pretrained weights.*checkpoint_path="):
        LongTailModule.load_from_checkpoint(
            path, backbone=random, finetune=AdaptFormer(), loss=LogitAdjustedLoss()
        )


def test_method_that_does_not_apply_names_those_that_do(resnet_file):
    backbone = timm_backbone("test_resnet", CLASSES, checkpoint_path=resnet_file)
    with pytest.raises(
        ValueError,
        match=r"AdaptFormer does not apply to ResNet .*methods that apply: BitFit, FullFineTuning, "
        r"LinearProbe$",
    ):
        module(backbone, AdaptFormer())


def test_lora_target_modules_that_match_nothing_name_the_layers(vit_file):
    with pytest.raises(ValueError, match=r"target_modules \['q_proj'\] match no layer.*qkv"):
        module(vit(vit_file), LoRA(target_modules=["q_proj"]))


@SLOW
def test_bf16_fit_keeps_the_frozen_base(vit_file, tmp_path):
    finetuned = module(vit(vit_file), AdaptFormer())
    before = finetuned.backbone.blocks[0].attn.qkv.weight.clone()
    trainer(tmp_path, precision="bf16-mixed").fit(finetuned, datamodule=ImagesLT())
    assert torch.equal(finetuned.backbone.blocks[0].attn.qkv.weight, before)
    assert finetuned.backbone.blocks[0].adaptformer.up_proj.weight.abs().sum() > 0


@SLOW
def test_ddp_two_processes_train_the_same_adapters_and_keep_the_base(tmp_path):
    import ddp_finetune_worker as worker
    from test_ddp import run_worker

    base = tmp_path / "base.safetensors"
    worker.save_base(base)
    result = run_worker("ddp_finetune_worker.py", tmp_path, str(base))
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"finetune_rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # the ranks' adapters agree: gradients were all-reduced
    untrained = worker.make_module(str(base))
    named = list(untrained.backbone.named_parameters())
    assert ranks[0]["frozen"] == worker.digest((n, p) for n, p in named if not p.requires_grad)
    assert ranks[0]["trained"] != worker.digest((n, p) for n, p in named if p.requires_grad)
    # rank 0's checkpoint holds only what trained and reloads to rank 0's backbone
    checkpoint = torch.load(tmp_path / "peft.ckpt", weights_only=True)
    assert "backbone.blocks.0.attn.qkv.weight" not in checkpoint["state_dict"]
    reloaded = LongTailModule.load_from_checkpoint(
        tmp_path / "peft.ckpt",
        backbone=worker.make_module(str(base)).backbone,
        finetune=AdaptFormer(),
        loss=LogitAdjustedLoss(),
    )
    saved = torch.load(tmp_path / "finetuned_backbone.pt", weights_only=True)
    for name, tensor in reloaded.backbone.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


@SLOW
def test_resume_from_a_mid_epoch_crash_is_bit_exact(tmp_path):
    import ddp_finetune_worker as worker
    from lightning.pytorch.callbacks import OnExceptionCheckpoint
    from test_resume import Crash, CrashAt

    from ltlight.data import DigitsLTDataModule

    base = tmp_path / "base.safetensors"
    worker.save_base(base)

    def run(callbacks=(), ckpt_path=None):
        L.seed_everything(0)
        finetuned = worker.make_module(str(base))
        fit = trainer(
            tmp_path, max_epochs=2, callbacks=list(callbacks), enable_checkpointing=bool(callbacks)
        )
        fit.fit(
            finetuned, datamodule=DigitsLTDataModule(batch_size=32, seed=3), ckpt_path=ckpt_path
        )
        return finetuned.state_dict()

    straight = run()
    with pytest.raises(Crash):
        run([OnExceptionCheckpoint(dirpath=tmp_path, filename="crash"), CrashAt(step=21)])
    saved = torch.load(tmp_path / "crash.ckpt", weights_only=True)["state_dict"]
    assert "backbone.blocks.0.adaptformer.up_proj.weight" in saved
    assert "backbone.blocks.0.mlp.fc1.weight" not in saved
    resumed = run(ckpt_path=tmp_path / "crash.ckpt")
    assert straight.keys() == resumed.keys()
    for name, tensor in straight.items():
        assert torch.equal(resumed[name], tensor), name


def test_lift_config_with_a_local_file_saves_a_small_checkpoint_that_reloads_alone(
    tmp_path, monkeypatch, tiny_clip
):
    """`ltlight fit --config configs/digits_lt/lift.yaml` with checkpoint_path (a tiny ViT in
    place of CLIP), then `LongTailModule.load_from_checkpoint(path)` with nothing else, as
    `ltlight validate/test/predict` do: the base weights are found again from the file."""
    import ddp_finetune_worker as worker

    from ltlight.cli import LongTailCLI

    monkeypatch.chdir(tmp_path)
    base = tmp_path / "base.safetensors"
    worker.save_base(base)
    backbone = "--model.init_args.backbone.init_args"
    cli = LongTailCLI(
        args=[
            "--config", str(LIFT_DIGITS), "--trainer.logger=false",
            f"{backbone}.model_name=vit_tiny_patch16_224", f"{backbone}.checkpoint_path={base}",
            f"{backbone}.create_kwargs={json.dumps(worker.VIT)}", "--trainer.fast_dev_run=2",
            "--trainer.precision=32",
            *text_init_arguments(*tiny_clip),
        ],
        run=False,
    )  # fmt: skip
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    path = tmp_path / "lift.ckpt"
    cli.trainer.save_checkpoint(path)
    assert path.stat().st_size < 0.15 * base.stat().st_size
    reloaded = LongTailModule.load_from_checkpoint(path)
    images = torch.randn(5, 1, 8, 8)
    cli.model.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(images), cli.model(images))


class AdapterAtStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.weight = pl_module.backbone.blocks[1].adaptformer.up_proj.weight.detach().clone()


def test_stage_2_starts_from_a_fine_tuned_stage_1_checkpoint(vit_file, tmp_path):
    """Decoupled training on a fine-tuned model: stage 2 takes stage 1's adapters from its
    checkpoint of trained tensors only (init_weights), the frozen base from the same file."""
    stage1, path = _fit_and_save(tmp_path, vit(vit_file), AdaptFormer(), "stage1")
    adapter = stage1.backbone.blocks[1].adaptformer.up_proj.weight.detach().clone()
    assert adapter.abs().sum() > 0
    stage2 = module(vit(vit_file), AdaptFormer(), init_weights=str(path))
    at_start = AdapterAtStart()
    trainer(tmp_path, callbacks=[at_start]).fit(stage2, datamodule=ImagesLT())
    assert torch.equal(at_start.weight, adapter)
