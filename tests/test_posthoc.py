"""Post-hoc calibration: temperature scaling, logit adjustment, τ-normalisation.

References written again here: T against a brute-force NLL grid, the adjusted softmax and the
normalised rows by hand in float64; every callback through Lightning's real Trainer on Digits-LT.
"""

import logging
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltlight import LongTailModule
from ltlight.callbacks import PostHocLogitAdjustment, TauNormalization, TemperatureScaling
from ltlight.callbacks.posthoc.logit_adjustment import choose_tau
from ltlight.callbacks.posthoc.tau_normalization import tau_normalized
from ltlight.callbacks.posthoc.temperature_scaling import fit_temperature
from ltlight.data import DigitsLTDataModule
from ltlight.losses import GHMCLoss, LDAMLoss
from ltlight.models import DigitsNet, NormedLinear

# -- the fitted quantities against independent references ------------------------------------


def test_temperature_matches_a_brute_force_nll_grid():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (400,), generator=generator)
    # Over-confident logits: the right class gets a bump, everything is scaled up by 4.
    logits = torch.randn(400, 5, generator=generator, dtype=torch.float64)
    logits[torch.arange(400), target] += 1.0
    logits *= 4.0
    grid = np.arange(0.5, 10.0, 0.001)
    nll = []
    for t in grid:
        scaled = logits.numpy() / t
        log_z = np.log(np.exp(scaled - scaled.max(1, keepdims=True)).sum(1)) + scaled.max(1)
        nll.append(float(np.mean(log_z - scaled[np.arange(400), target.numpy()])))
    best = grid[int(np.argmin(nll))]
    assert fit_temperature(logits, target) == pytest.approx(best, abs=2e-3)
    assert best > 1.5  # the grid found a real over-confidence to correct


def test_tau_normalised_rows_by_hand():
    weight = torch.tensor([[3.0, 4.0], [0.6, 0.8], [1.0, 0.0]], dtype=torch.float64)
    for tau in (0.0, 0.5, 1.0):
        expected = torch.stack([row / math.sqrt(float(row @ row)) ** tau for row in weight])
        torch.testing.assert_close(tau_normalized(weight, tau), expected)


def test_choose_tau_takes_the_lowest_balanced_error_and_ties_nearest_one():
    # Two classes; the prior pushes every sample to class 0 until τ ≥ 0.5 corrects it.
    log_prior = torch.log(torch.tensor([0.9, 0.1], dtype=torch.float64))
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.5]], dtype=torch.float64)
    logits[1:, 1] -= 1.8  # class-1 samples look like class 0 without adjustment
    target = torch.tensor([0, 1, 1])
    tau = choose_tau(logits, target, log_prior, grid=[0.0, 0.5, 1.0, 1.5, 2.0])
    errors = {}
    for t in (0.0, 0.5, 1.0, 1.5, 2.0):  # balanced error by hand
        prediction = (logits - t * log_prior).argmax(1)
        recall = [float((prediction[target == c] == c).double().mean()) for c in (0, 1)]
        errors[t] = 1 - sum(recall) / 2
    best = min(errors.values())
    expected = min((t for t, e in errors.items() if e == best), key=lambda t: abs(t - 1))
    assert tau == expected


def test_predict_proba_is_the_adjusted_tempered_softmax_by_hand():
    module = LongTailModule(DigitsNet(num_classes=3, hidden=4), loss=LDAMLoss(max_m=0.5, s=10.0))
    module.class_counts = [60, 30, 10]
    module.loss.set_class_counts(module.class_counts)
    module.set_logit_adjustment(0.7, target_prior=[0.2, 0.3, 0.5])
    module.temperature = 1.7
    z = torch.randn(6, 3, dtype=torch.float64)
    pi = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    adjusted = (10.0 * z - 0.7 * torch.log(pi) + torch.log(q)) / 1.7  # LDAM predicts with s·z
    torch.testing.assert_close(module.predict_proba(z), torch.softmax(adjusted, dim=-1))
    module.set_logit_adjustment(0.0)
    torch.testing.assert_close(module.predict_proba(z), torch.softmax(10.0 * z / 1.7, dim=-1))


def test_sigmoid_losses_are_calibrated_on_their_normalised_sigmoids():
    module = LongTailModule(DigitsNet(num_classes=3, hidden=4), loss=GHMCLoss())
    z = torch.randn(5, 3, dtype=torch.float64)
    s = torch.sigmoid(z)
    torch.testing.assert_close(module.predict_proba(z), s / s.sum(1, keepdim=True))


# -- through Lightning's Trainer on Digits-LT ---------------------------------------------------


def make_run(tmp_path, callbacks, val_per_class=10, epochs=3, normed=False, **trainer_kwargs):
    torch.manual_seed(0)
    module = LongTailModule(
        DigitsNet(hidden=8, normed=normed),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        loss=LDAMLoss() if normed else None,
    )
    data = DigitsLTDataModule(val_per_class=val_per_class, batch_size=64, eval_batch_size=500)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        callbacks=callbacks,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    return module, data, trainer


def validation_logits(module, data):
    module.eval()
    with torch.no_grad():
        batches = list(data.val_dataloader())
        logits = torch.cat([module(x) for x, _ in batches]).double()
    return logits, torch.cat([y for _, y in batches])


def test_temperature_scaling_at_the_end_of_fit_is_saved_and_used(tmp_path):
    callback = TemperatureScaling()
    module, data, trainer = make_run(tmp_path, [callback])
    trainer.fit(module, data)
    logits, target = validation_logits(module, data)
    assert module.temperature == pytest.approx(fit_temperature(logits, target), rel=1e-6)
    assert module.temperature != 1.0
    before, after = callback.metrics_before, callback.metrics_after
    assert after["nll"] < before["nll"]
    assert after["error"] == before["error"]  # accuracy unchanged by construction
    assert after["balanced_error"] == before["balanced_error"]
    # The last checkpoint was written again with T, and a loaded module predicts with it.
    (last,) = (tmp_path / "checkpoints").glob("epoch=2-*.ckpt")  # the default checkpoint
    state = torch.load(last, weights_only=True)["state_dict"]
    assert float(state["calibration.temperature"]) == pytest.approx(module.temperature)
    loaded = LongTailModule.load_from_checkpoint(last, backbone=DigitsNet(hidden=8))
    assert loaded.temperature == pytest.approx(module.temperature)
    x = torch.randn(4, 1, 8, 8)
    module.eval()
    with torch.no_grad():
        expected = torch.softmax(module(x) / module.temperature, dim=-1)
        torch.testing.assert_close(module.predict_step((x, None), 0), expected)


def test_logit_adjustment_then_temperature_fits_t_on_the_adjusted_logits(tmp_path):
    adjustment, scaling = PostHocLogitAdjustment(), TemperatureScaling()
    module, data, trainer = make_run(tmp_path, [adjustment, scaling])
    trainer.fit(module, data)
    tau = module.logit_adjustment_tau
    logits, target = validation_logits(module, data)
    counts = torch.tensor(module.class_counts, dtype=torch.float64)
    log_prior = torch.log(counts / counts.sum())
    assert tau == pytest.approx(choose_tau(logits, target, log_prior))  # a float32 buffer
    adjusted = logits - tau * log_prior
    assert module.temperature == pytest.approx(fit_temperature(adjusted, target), rel=1e-4)
    # With τ > 0 the head is penalised: balanced error does not get worse on validation.
    assert adjustment.metrics_after["balanced_error"] <= adjustment.metrics_before["balanced_error"]


def test_tau_normalisation_rescales_the_classifier_once(tmp_path):
    callback = TauNormalization()
    module, data, trainer = make_run(tmp_path, [callback])
    trainer.fit(module, data)
    tau = float(module.calibration.classifier_tau)
    assert 0.0 <= tau <= 1.0
    weight = module.backbone.linear.weight.detach().double()
    norms = weight.norm(dim=1)
    assert bool(torch.all(module.backbone.linear.bias == 0))
    # Rows now have norm ‖W_j‖^(1−τ): their spread shrank unless τ = 0.
    assert callback.is_fitted(module)
    trainer.validate(module, data)  # already applied: not applied twice
    torch.testing.assert_close(module.backbone.linear.weight.detach().double().norm(dim=1), norms)


def test_tau_normalisation_with_a_given_tau_by_hand(tmp_path):
    module, data, trainer = make_run(tmp_path, [TauNormalization(tau=1.0)])
    trainer.fit(module, data)
    norms = module.backbone.linear.weight.detach().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(10))  # τ = 1: unit rows


def test_a_saved_checkpoint_is_calibrated_in_one_command_into_the_run_folder(tmp_path, caplog):
    from ltlight.cli import LongTailCLI

    base = [
        "--config",
        "configs/digits_lt/ce.yaml",
        "--trainer.max_epochs=2",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--data.init_args.val_per_class=10",
    ]
    LongTailCLI(args=["fit", *base, "--trainer.callbacks=[]"])
    (checkpoint,) = tmp_path.rglob("checkpoints/*.ckpt")
    calibrated = checkpoint.parent.parent / "calibrated.ckpt"  # a relative save_path: the run's
    lightning_log = logging.getLogger("lightning.pytorch")  # it does not propagate to the root
    lightning_log.addHandler(caplog.handler)
    try:
        cli = LongTailCLI(
            args=[
                "test",
                *base,
                f"--ckpt_path={checkpoint}",
                "--trainer.callbacks+=ltlight.callbacks.TemperatureScaling",
                "--trainer.callbacks.save_path=calibrated.ckpt",
            ]
        )
    finally:
        lightning_log.removeHandler(caplog.handler)
    assert not Path("calibrated.ckpt").exists()
    assert f"calibrated checkpoint saved to {calibrated}" in caplog.text
    assert "weights_only" not in caplog.text  # no notice beside "load with weights_only=True"
    temperature = cli.model.temperature
    assert temperature != 1.0
    saved = torch.load(calibrated, weights_only=True)["state_dict"]["calibration.temperature"]
    assert float(saved) == pytest.approx(temperature)
    # The original checkpoint is untouched.
    original = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert float(original.get("calibration.temperature", torch.tensor(1.0))) == 1.0


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("callback", [TemperatureScaling, PostHocLogitAdjustment, TauNormalization])
def test_calibrating_on_the_test_split_is_refused_before_training(tmp_path, callback):
    module, data, trainer = make_run(tmp_path, [callback()], val_per_class=0)
    with pytest.raises(ValueError, match="val_per_class=0: its validation split is the test"):
        trainer.fit(module, data)
    assert trainer.global_step == 0


def test_temperature_scaling_listed_before_the_adjustment_is_an_error(tmp_path):
    module, data, trainer = make_run(tmp_path, [TemperatureScaling(), PostHocLogitAdjustment()])
    with pytest.raises(ValueError, match="list TemperatureScaling last"):
        trainer.fit(module, data)


def test_tau_normalisation_of_a_cosine_head_is_refused(tmp_path):
    module, data, trainer = make_run(tmp_path, [TauNormalization()], normed=True)
    assert isinstance(module.backbone.linear, NormedLinear)
    with pytest.raises(TypeError, match="cosine head"):
        trainer.fit(module, data)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TauNormalization(tau=1.5), r"tau must be in \[0, 1\], got 1.5"),
        (lambda: TauNormalization(tau=-0.1), r"tau must be in \[0, 1\]"),
        (lambda: PostHocLogitAdjustment(tau=-1.0), r"tau must be >= 0, got -1.0"),
        (lambda: PostHocLogitAdjustment(target_prior=[0.5, 0.0]), "target_prior must be positive"),
    ],
)
def test_tau_outside_its_range_is_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_module_temperature_and_prior_checks():
    module = LongTailModule(DigitsNet(num_classes=3, hidden=4))
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        module.temperature = 0.0
    with pytest.raises(ValueError, match="needs the training class counts"):
        module.set_logit_adjustment(1.0)
    module.class_counts = [5, 3, 1]
    with pytest.raises(ValueError, match="target_prior must have 3 positive entries"):
        module.set_logit_adjustment(1.0, target_prior=[0.5, 0.5])


def test_checkpoints_without_calibration_state_still_load(tmp_path):
    module = LongTailModule(DigitsNet(hidden=4))
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("calibration.")}
    checkpoint = {"state_dict": state, "hyper_parameters": {}}
    checkpoint["pytorch-lightning_version"] = L.__version__
    torch.save(checkpoint, tmp_path / "old.ckpt")
    loaded = LongTailModule.load_from_checkpoint(
        tmp_path / "old.ckpt", backbone=DigitsNet(hidden=4)
    )
    assert loaded.temperature == 1.0 and loaded.logit_adjustment_tau == 0.0
    z = torch.randn(2, 10)
    torch.testing.assert_close(loaded.predict_proba(z), F.softmax(z, dim=-1))
