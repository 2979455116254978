"""Decoupled two-stage training: init_weights, ClassifierRetraining (cRT, LWS, MiSLAS's stage 2),
label-aware smoothing against the official MiSLAS formula, mixup, the classifier accessors, and
the two-stage run from YAML through Lightning's real Trainer."""

import math
import zipfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ltlight import LongTailModule
from ltlight.callbacks import ClassifierRetraining
from ltlight.checkpoints import load_backbone_weights
from ltlight.data import DigitsLTDataModule
from ltlight.losses import LabelAwareSmoothingLoss
from ltlight.models import DigitsNet, NormedLinear, get_classifier, resnet20

# -- label-aware smoothing against the official code ---------------------------------------------


def official_smoothing(counts, head, tail, shape):
    """dvlab-research/MiSLAS methods.py, LabelAwareSmoothing.__init__, in NumPy float64."""
    n_1, n_k = max(counts), min(counts)
    counts = np.array(counts, dtype=np.float64)
    if shape == "concave":
        return tail + (head - tail) * np.sin((counts - n_k) * np.pi / (2 * (n_1 - n_k)))
    if shape == "linear":
        return tail + (head - tail) * (counts - n_k) / (n_1 - n_k)
    return head + (head - tail) * np.sin(1.5 * np.pi + (counts - n_k) * np.pi / (2 * (n_1 - n_k)))


def official_forward(logits, target, smooth):
    """The same file's LabelAwareSmoothing.forward, per sample."""
    logprobs = F.log_softmax(logits, dim=-1)
    nll = -logprobs.gather(dim=-1, index=target.unsqueeze(1)).squeeze(1)
    smoothing = torch.as_tensor(smooth)[target]
    return (1.0 - smoothing) * nll + smoothing * (-logprobs.mean(dim=-1))


COUNTS = [500, 300, 120, 40, 10, 5]


@pytest.mark.parametrize("shape", ["concave", "linear", "convex"])
def test_label_aware_smoothing_matches_the_official_mislas_formula(shape):
    loss = LabelAwareSmoothingLoss(COUNTS, head=0.4, tail=0.1, shape=shape, reduction="none")
    expected = official_smoothing(COUNTS, 0.4, 0.1, shape)
    np.testing.assert_allclose(loss.smoothing.double().numpy(), expected, atol=1e-7)
    assert loss.smoothing[0] == pytest.approx(0.4) and loss.smoothing[-1] == pytest.approx(0.1)
    logits = torch.randn(12, 6, dtype=torch.float64)
    target = torch.randint(0, 6, (12,))
    smooth = torch.tensor(expected)
    torch.testing.assert_close(
        loss.double()(logits, target), official_forward(logits, target, smooth), rtol=1e-6, atol=0
    )
    mean = LabelAwareSmoothingLoss(COUNTS, shape=shape).double()(logits, target)
    torch.testing.assert_close(mean, official_forward(logits, target, smooth).mean())


def test_label_aware_smoothing_target_is_the_papers_with_rescaled_epsilon():
    # ℓ = cross-entropy against a target 1 − ε(C−1)/C on y and ε/C elsewhere.
    loss = LabelAwareSmoothingLoss([10, 1], head=0.3, tail=0.3, reduction="none").double()
    logits = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    log_p = torch.log_softmax(logits, dim=-1)[0]
    target = torch.tensor([1.0 - 0.3 / 2, 0.3 / 2], dtype=torch.float64)
    assert float(loss(logits, torch.tensor([0]))) == pytest.approx(float(-(target * log_p).sum()))


def test_label_aware_smoothing_bad_arguments():
    with pytest.raises(ValueError, match=r"head must be in \[0, 1\], got 1.5"):
        LabelAwareSmoothingLoss(head=1.5)
    with pytest.raises(ValueError, match="shape must be one of"):
        LabelAwareSmoothingLoss(shape="round")
    with pytest.raises(RuntimeError, match="needs the training class counts"):
        LabelAwareSmoothingLoss()(torch.zeros(2, 3), torch.tensor([0, 1]))
    balanced = LabelAwareSmoothingLoss([7, 7, 7], head=0.25)  # official code divides by zero
    assert balanced.smoothing.tolist() == pytest.approx([0.25] * 3)


# -- classifier accessors ------------------------------------------------------------------------


def test_classifier_is_found_the_timm_way_and_as_torchvision_fc():
    digits = DigitsNet(num_classes=10, hidden=4)
    assert get_classifier(digits) is digits.linear
    digits.reset_classifier(5)
    assert digits.linear.out_features == 5 and digits.num_classes == 5
    cosine = resnet20(num_classes=10, normed=True)
    cosine.reset_classifier(7)
    assert isinstance(cosine.linear, NormedLinear) and cosine.linear.out_features == 7
    tv = torchvision.models.resnet18(num_classes=10)
    assert get_classifier(tv) is tv.fc
    with pytest.raises(TypeError, match="get_classifier"):
        get_classifier(nn.Sequential(nn.Linear(2, 2)))


# -- through the Trainer -------------------------------------------------------------------------


def trainer_for(tmp_path, epochs=2):
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A stage-1 DigitsNet checkpoint (3 epochs of CE on Digits-LT with a validation split)."""
    folder = tmp_path_factory.mktemp("stage1")
    torch.manual_seed(0)
    module = LongTailModule(DigitsNet(hidden=8), optimizer=sgd)
    trainer = trainer_for(folder, epochs=3)
    trainer.fit(module, DigitsLTDataModule(val_per_class=10))
    path = str(folder / "stage1.ckpt")
    trainer.save_checkpoint(path)
    return path, {k: v.clone() for k, v in module.backbone.state_dict().items()}


def stage2(tmp_path, stage1_path, callback, loss=None, epochs=2):
    module = LongTailModule(
        DigitsNet(hidden=8),
        loss=loss,
        optimizer=sgd,
        init_weights=stage1_path,
        callbacks=[callback],
    )
    trainer = trainer_for(tmp_path, epochs)
    data = DigitsLTDataModule(val_per_class=10)
    return module, trainer, data


def test_crt_retrains_only_a_reinitialised_classifier_class_balanced(tmp_path, stage1):
    path, weights = stage1
    callback = ClassifierRetraining(mode="crt")
    module, trainer, data = stage2(tmp_path, path, callback)
    seen: list[torch.Tensor] = []
    module.on_train_batch_start = lambda batch, index: seen.append(batch[1])
    trainer.fit(module, data)
    after = module.backbone.state_dict()
    for name, tensor in weights.items():
        if name.startswith("linear."):
            assert not torch.equal(after[name], tensor), name  # retrained
        else:
            assert torch.equal(after[name], tensor), name  # features and BN statistics kept
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimised == {id(p) for p in module.backbone.linear.parameters()}
    assert trainer.train_dataloader.sampler.class_balanced
    labels = torch.cat(seen)
    counts = torch.bincount(labels, minlength=10).double()
    # Class-balanced draws: the rarest class (12 training images) is drawn like the head (124).
    assert float(counts.min()) > 0.4 * float(counts.mean())


def test_lws_learns_one_scale_per_class_and_keeps_the_classifier(tmp_path, stage1):
    path, weights = stage1
    module, trainer, data = stage2(tmp_path, path, ClassifierRetraining(mode="lws"))
    trainer.fit(module, data)
    after = module.backbone.state_dict()
    assert all(torch.equal(after[name], tensor) for name, tensor in weights.items())
    scale = module.class_scale.detach()
    assert scale.shape == (10,) and not torch.equal(scale, torch.ones(10))
    x = torch.randn(3, 1, 8, 8)
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), module.backbone(x) * scale)
    # The scale is in the checkpoint and comes back with it.
    trainer.save_checkpoint(tmp_path / "lws.ckpt")
    loaded = LongTailModule.load_from_checkpoint(
        tmp_path / "lws.ckpt", backbone=DigitsNet(hidden=8)
    )
    torch.testing.assert_close(loaded.class_scale.detach(), scale)


def test_mislas_stage_two_shifts_bn_statistics_but_not_bn_weights(tmp_path, stage1):
    path, weights = stage1
    callback = ClassifierRetraining(
        mode="crt", reinitialize=False, learn_scale=True, shifted_bn=True
    )
    module, trainer, data = stage2(tmp_path, path, callback, loss=LabelAwareSmoothingLoss())
    trainer.fit(module, data)
    after = module.backbone.state_dict()
    assert not torch.equal(after["body.1.running_mean"], weights["body.1.running_mean"])
    assert torch.equal(after["body.1.weight"], weights["body.1.weight"])  # affine frozen
    assert torch.equal(after["body.0.weight"], weights["body.0.weight"])  # convolutions frozen
    assert not torch.equal(after["linear.weight"], weights["linear.weight"])  # fine-tuned
    assert module.class_scale is not None


def test_mislas_classifier_learning_rate_is_lr_factor_times_the_scales(tmp_path, stage1):
    """The official stage 2: SGD([classifier, lws], lr) then every epoch
    classifier lr = lr_factor · cosine(epoch), the scale's = cosine(epoch)."""
    path, _ = stage1
    callback = ClassifierRetraining(
        mode="crt", reinitialize=False, learn_scale=True, classifier_lr_factor=0.2
    )
    module, trainer, data = stage2(tmp_path, path, callback, epochs=3)
    module.lr_scheduler_factory = lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=3
    )
    seen = []
    module.on_train_epoch_start = lambda: seen.append(
        [group["lr"] for group in trainer.optimizers[0].param_groups]
    )
    trainer.fit(module, data)
    groups = trainer.optimizers[0].param_groups
    assert [id(p) for p in groups[0]["params"]] == [
        id(p) for p in module.backbone.linear.parameters()
    ]
    assert [id(p) for p in groups[1]["params"]] == [id(module.class_scale)]
    for epoch, (classifier_lr, scale_lr) in enumerate(seen):
        cosine = 0.5 * 0.1 * (1 + math.cos(math.pi * epoch / 3))
        assert scale_lr == pytest.approx(cosine)
        assert classifier_lr == pytest.approx(0.2 * cosine)


def test_init_weights_from_another_architecture_names_the_tensor(tmp_path, stage1):
    path, _ = stage1
    wider = LongTailModule(DigitsNet(hidden=16), init_weights=path)
    with pytest.raises(ValueError, match=r"backbone\.body\.0\.weight has shape \(8, 1, 3, 3\)"):
        trainer_for(tmp_path).fit(wider, DigitsLTDataModule(val_per_class=10))
    fewer = LongTailModule(DigitsNet(num_classes=5, hidden=8), init_weights=path, num_classes=5)
    with pytest.raises(ValueError, match=r"backbone\.linear\.weight .*another architecture or"):
        load_backbone_weights(fewer.backbone, path)
    other = LongTailModule(resnet20(num_classes=10, in_channels=1), init_weights=path)
    with pytest.raises(ValueError, match=r"has no tensor backbone\.conv1\.weight"):
        load_backbone_weights(other.backbone, path)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at 'nowhere\.ckpt'"):
        load_backbone_weights(DigitsNet(hidden=8), "nowhere.ckpt")


def test_init_weights_from_a_truncated_or_damaged_file_gets_the_checks_of_ckpt_path(
    tmp_path, stage1
):
    data = Path(stage1[0]).read_bytes()
    with zipfile.ZipFile(stage1[0]) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
        offset = member.header_offset + 30 + len(member.filename) + len(member.extra)
    damaged = bytearray(data)
    damaged[offset + member.compress_size // 2] ^= 0xFF  # a changed byte inside a tensor
    cases = {"truncated": data[: len(data) // 2], "damaged": bytes(damaged), "empty": b""}
    words = {"truncated": "no zip directory", "damaged": "CRC-32", "empty": "empty"}
    for name, content in cases.items():
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(content)
        with pytest.raises(ValueError, match=words[name]) as error:
            load_backbone_weights(DigitsNet(hidden=8), str(path))
        assert str(error.value).startswith(f"init_weights: {path} "), error.value


def test_stage_two_without_a_stage_one_checkpoint_is_an_error(tmp_path):
    module = LongTailModule(DigitsNet(hidden=8), callbacks=[ClassifierRetraining()])
    with pytest.raises(ValueError, match=r"set model\.init_args\.init_weights to the stage-1"):
        trainer_for(tmp_path).fit(module, DigitsLTDataModule(val_per_class=10))


def test_classifier_retraining_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of"):
        ClassifierRetraining(mode="tau")
    with pytest.raises(ValueError, match="contradicts mode='lws'"):
        ClassifierRetraining(mode="lws", reinitialize=True)
    with pytest.raises(ValueError, match=r"classifier_lr_factor must be > 0, got 0"):
        ClassifierRetraining(classifier_lr_factor=0)
    with pytest.raises(ValueError, match=r"classifier_lr_factor=0.5 contradicts mode='lws'"):
        ClassifierRetraining(mode="lws", classifier_lr_factor=0.5)
    with pytest.raises(ValueError, match="mixup_alpha must be >= 0"):
        LongTailModule(DigitsNet(), mixup_alpha=-1.0)


def test_mixup_loss_is_the_mixed_loss_of_both_targets():
    torch.manual_seed(3)
    module = LongTailModule(DigitsNet(hidden=4), mixup_alpha=1.0)
    module.log = lambda *args, **kwargs: None
    images, target = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    np.random.seed(5)  # noqa: NPY002
    torch.manual_seed(7)
    loss = module.training_step((images, target), 0)
    np.random.seed(5)  # noqa: NPY002
    torch.manual_seed(7)
    lam = np.random.beta(1.0, 1.0)  # noqa: NPY002
    perm = torch.randperm(6)
    logits = module(lam * images + (1 - lam) * images[perm])
    expected = lam * F.cross_entropy(logits, target) + (1 - lam) * F.cross_entropy(
        logits, target[perm]
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert not math.isclose(lam, 1.0)


def test_two_stage_run_from_yaml(tmp_path, monkeypatch):
    from pathlib import Path

    from ltlight.cli.two_stage import run

    configs = Path(__file__).resolve().parents[1] / "configs" / "digits_lt"
    monkeypatch.chdir(tmp_path)
    extra = ["--trainer.max_epochs=2", "--trainer.logger=false"]
    extra += ["--trainer.enable_progress_bar=false", "--trainer.callbacks=[]"]
    first, second = run(str(configs / "ce_stage1.yaml"), str(configs / "crt.yaml"), extra)
    stage1_features = first.model.backbone.body.state_dict()
    for name, tensor in second.model.backbone.body.state_dict().items():
        assert torch.equal(tensor, stage1_features[name]), name
    assert second.model.init_weights is not None
    assert second.trainer.state.finished
    assert not torch.equal(second.model.backbone.linear.weight, first.model.backbone.linear.weight)


@pytest.mark.slow
def test_two_stage_logs_each_stage_to_its_own_wandb_run_in_one_group(tmp_path, monkeypatch):
    from ltlight.cli.two_stage import run

    configs = Path(__file__).resolve().parents[1] / "configs" / "digits_lt"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    extra = ["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]
    extra += ["--trainer.callbacks=[]"]  # W&B stays on: the digits configs' WandbLogger
    first, second = run(str(configs / "ce_stage1.yaml"), str(configs / "crt.yaml"), extra)
    runs = []
    for cli in (first, second):  # each stage's W&B files are in its own run folder
        (offline_run,) = (cli.run_dir / "wandb").glob("offline-run-*")
        runs.append(offline_run.name.rsplit("-", 1)[-1])  # the W&B run id
        (log,) = offline_run.glob("run-*.wandb")
        assert b"ce_stage1+crt/" in log.read_bytes()  # the group both runs share
    assert runs[0] != runs[1]
