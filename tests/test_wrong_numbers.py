"""Wrong inputs that used to give a wrong number (or a bare traceback) now give a clear error,
and ``val/loss`` is a validation figure, not the training objective.

Metrics refuse targets outside ``[0, C)`` and logits passed as probabilities (counted on the
device in ``update``, refused at ``compute``: no host sync per step); data arguments that cannot
work are refused when the datamodule is built, naming the argument.
"""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from ltlight import LongTailModule
from ltlight.callbacks import DeferredReweighting
from ltlight.data import DigitsLTDataModule, long_tail_counts
from ltlight.metrics import LongTailMetrics, long_tail_metrics
from ltlight.models import DigitsNet


def probabilities(n=6, c=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, c, generator=generator), dim=1)


@pytest.mark.parametrize("bad", [3, -1, 100])
def test_metrics_refuse_a_target_outside_the_classes(bad):
    target = torch.tensor([0, 1, 2, 0, 1, bad])
    metric = LongTailMetrics(3)
    metric.update(probabilities(), target)  # counted, not checked: no host sync per step
    with pytest.raises(ValueError, match=r"target must hold class indices in \[0, 3\).*1 of 6"):
        metric.compute()
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        long_tail_metrics(probabilities(), target, 3)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.log(p),  # log-probabilities
        lambda p: p * 10 - 3,  # logits
        lambda p: p * 0.5,  # rows summing to 0.5
        lambda p: torch.where(torch.arange(3) == 0, torch.nan, p),  # NaN
    ],
    ids=["log_probs", "logits", "unnormalised", "nan"],
)
def test_metrics_refuse_rows_that_are_not_probabilities(make):
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    metric = LongTailMetrics(3)
    metric.update(make(probabilities()), target)
    with pytest.raises(ValueError, match=r"probs must be probabilities.*6 of 6 rows"):
        metric.compute()


def test_metrics_of_valid_probabilities_are_unchanged_by_the_checks():
    probs, target = probabilities(60, 4, seed=1), torch.arange(60) % 4
    metric = LongTailMetrics(4)
    for chunk in range(0, 60, 20):
        metric.update(probs[chunk : chunk + 20], target[chunk : chunk + 20])
    got = metric.compute()
    correct = (probs.argmax(1) == target).double()
    assert got["error"].item() == pytest.approx(1 - correct.mean().item(), abs=1e-7)
    per_class = [1 - correct[target == j].mean().item() for j in range(4)]
    assert got["balanced_error"].item() == pytest.approx(sum(per_class) / 4, abs=1e-6)


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"profile": "step", "step_fraction": 0.05}, ["step_fraction", "0.05", "head class"]),
        ({"seed": 2**64 + 5}, ["seed", str(2**64 + 5)]),
        ({"seed": -1}, ["seed", "-1"]),
        ({"batch_size": math.nan}, ["batch_size", "nan"]),
        ({"batch_size": math.inf}, ["batch_size", "inf"]),
        ({"eval_batch_size": -math.inf}, ["eval_batch_size", "-inf"]),
    ],
    ids=lambda value: str(value)[:30],
)
def test_data_arguments_that_cannot_work_are_refused_at_construction(arguments, words):
    with pytest.raises(ValueError) as error:
        DigitsLTDataModule(**arguments)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_step_profile_keeps_at_least_one_head_class_at_the_smallest_fraction():
    assert long_tail_counts(100, 10, 10, profile="step", step_fraction=0.1) == [100] + [10] * 9
    with pytest.raises(ValueError, match="step_fraction must be >= 1/num_classes"):
        long_tail_counts(100, 10, 10, profile="step", step_fraction=0.09)


class ExtraTerm(LongTailModule):
    """A subclass whose training loss adds a term that is not a validation figure."""

    def compute_loss(self, logits, target):
        return super().compute_loss(logits, target) + 100.0


def test_val_loss_is_the_plain_unweighted_loss_whatever_weights_and_extra_terms_train(tmp_path):
    module = ExtraTerm(DigitsNet())
    data = DigitsLTDataModule()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        callbacks=[DeferredReweighting(start_epoch=0, weights="inverse_frequency")],
    )
    trainer.fit(module, datamodule=data)
    assert module.loss.weight is not None  # DRW is on
    (logged,) = trainer.validate(module, datamodule=data, verbose=False)
    module.eval()
    with torch.no_grad():
        pairs = [(module(x).double(), y) for x, y in data.val_dataloader()]
    # Lightning averages the per-batch values weighted by batch size: the mean over samples.
    plain = torch.cat([F.cross_entropy(z, y, reduction="none") for z, y in pairs]).mean()
    assert logged["val/loss"] == pytest.approx(plain.item(), rel=1e-5)
