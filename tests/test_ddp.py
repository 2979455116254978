"""DDP with Lightning's own strategy: 2 CPU processes (gloo) train LDAM-DRW/DRS on Digits-LT.

``tests/ddp_worker.py`` runs as a script (Lightning's launcher starts rank 1 by running it again)
and writes what each rank saw to JSON; here the paper's claims are checked against a
single-process computation of the same things.
"""

import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import ddp_ghm_worker as ghm
import ddp_sigterm_worker as sigterm_worker
import ddp_worker
import lightning as L
import pytest
import torch

from ltlight.data.sampling import EpochSampler
from ltlight.losses import GHMCLoss, LDAMLoss, effective_number

WORLD_SIZE = 2


def run_worker(name: str, out: Path, *args: str, timeout: int = 600):
    """``python tests/<name> OUT ARGS`` in ``out`` (its ranks are its own processes): the result."""
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    env.pop("LOCAL_RANK", None)
    return subprocess.run(
        [sys.executable, str(Path(__file__).with_name(name)), str(out), *args],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    result = run_worker("ddp_worker.py", out)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    return ranks, out / "weights.pt"


@pytest.fixture(scope="module")
def training_set():
    datamodule = ddp_worker.make_datamodule()
    datamodule.setup("fit")
    return datamodule.train_data[1]  # labels of the whole long-tailed training set


def test_both_processes_ran_as_ranks_of_one_job(ddp_run):
    ranks, _ = ddp_run
    assert [r["global_rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == WORLD_SIZE for r in ranks)


def test_every_rank_loss_holds_the_whole_training_sets_class_counts(ddp_run, training_set):
    ranks, _ = ddp_run
    whole = torch.bincount(training_set, minlength=10).tolist()
    assert whole == [124, 96, 74, 57, 44, 34, 26, 20, 16, 12]
    margins = LDAMLoss(class_counts=whole).margins
    for rank in ranks:
        assert rank["loss_class_counts"] == whole
        assert rank["module_class_counts"] == whole
        assert rank["datamodule_class_counts"] == whole
        assert torch.equal(torch.tensor(rank["margins"], dtype=margins.dtype), margins)
        # ... while the rank itself trains on only half of the images of each epoch.
        shard = torch.bincount(torch.tensor(rank["epochs"][0]["labels"]), minlength=10)
        assert shard.sum() == 252 and shard.tolist() != whole


def test_drw_switches_on_on_every_rank_at_the_same_epoch(ddp_run, training_set):
    ranks, _ = ddp_run
    whole = torch.bincount(training_set, minlength=10).tolist()
    expected = effective_number(whole, beta=0.9999).tolist()
    for epoch in range(ddp_worker.EPOCHS):
        weights = [rank["epochs"][epoch]["loss_weight"] for rank in ranks]
        if epoch < ddp_worker.DRW_EPOCH:
            assert weights == [None] * WORLD_SIZE
        else:
            for weight in weights:
                assert weight == pytest.approx(expected, rel=1e-6)
            assert weights[0] == weights[1]


def test_drs_gives_each_rank_a_disjoint_shard_of_one_class_balanced_draw(ddp_run, training_set):
    ranks, _ = ddp_run
    for epoch in range(ddp_worker.EPOCHS):
        balanced = epoch >= ddp_worker.DRS_EPOCH
        assert [rank["epochs"][epoch]["class_balanced"] for rank in ranks] == [balanced] * 2
        # The epoch's draw over the whole training set, made by one process, padded like
        # DistributedSampler to 504 = 2 × 252; rank r holds positions r, r + 2, ...
        single = EpochSampler(training_set, shuffle=True, seed=5)
        single.class_balanced = balanced
        order = single.global_order(epoch)
        padded = torch.cat([order, order[: 2 * 252 - len(order)]])
        for r, rank in enumerate(ranks):
            indices = torch.tensor(rank["epochs"][epoch]["indices"])
            assert torch.equal(indices, padded[r::WORLD_SIZE])
            # and these are the images the rank trained on
            assert rank["epochs"][epoch]["labels"] == training_set[indices].tolist()
        labels = training_set[order]
        if balanced:  # every class about equally often, the rarest (12 images) included
            assert torch.bincount(labels, minlength=10).min() >= 25
        else:  # a permutation: each image once
            assert torch.equal(order.sort().values, torch.arange(len(training_set)))


SYNCED = ["val/error", "val/balanced_error", "val/many_shot_error", "val/medium_shot_error"]
SYNCED += ["val/few_shot_error", "val/ece"]


def test_each_rank_resumes_with_its_own_rng_states(ddp_run):
    ranks, _ = ddp_run
    saved = [rank["rng_at_save"] for rank in ranks]
    assert saved[0] != saved[1]  # the ranks' streams differ, as with dropout or augmentation
    assert [rank["rng_at_resume"] for rank in ranks] == saved


def test_validation_metrics_are_the_same_on_every_rank(ddp_run):
    ranks, _ = ddp_run
    assert ranks[0]["validate"] == ranks[1]["validate"]
    assert ranks[0]["validation_during_fit"] == ranks[1]["validation_during_fit"]
    assert len(ranks[0]["validation_during_fit"]) == ddp_worker.EPOCHS
    assert ranks[0]["validation_during_fit"][-1] == ranks[0]["validate"]


def test_synced_validation_equals_a_single_process_validation_of_the_same_weights(ddp_run):
    ranks, weights = ddp_run
    module = ddp_worker.make_module()
    module.load_state_dict(torch.load(weights, weights_only=True))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
    )
    # 499 test images split 250/249 in 4 and 3 batches: nothing padded, every image counted once
    (single,) = trainer.validate(module, datamodule=ddp_worker.make_datamodule(), verbose=False)
    for name in SYNCED:
        # counts are summed exactly; ECE's float32 confidence sums in another order
        tolerance = 1e-6 if name == "val/ece" else 0.0
        assert ranks[0]["validate"][name] == pytest.approx(float(single[name]), abs=tolerance), name


def test_ghm_histogram_is_all_reduced_identical_on_every_rank_and_equal_to_one_process(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    result = run_worker("ddp_ghm_worker.py", tmp_path, port, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"ghm_rank{r}.pt", weights_only=True) for r in range(2)]
    single = GHMCLoss(momentum=0.75, reduction="none")
    for step, (logits, target) in enumerate(ghm.global_batches()):
        single.train(step < ghm.STEPS)
        expected = single(logits, target)
        for r, rank in enumerate(ranks):
            assert torch.equal(rank["ema"][step], single.ema_counts), (step, r)
            rows = slice(r * ghm.HALF, (r + 1) * ghm.HALF)
            if step < ghm.STEPS:  # training: β from the whole global batch's histogram
                torch.testing.assert_close(rank["values"][step], expected[rows])
    assert single.ema_counts.sum() > 0


def test_sigterm_under_ddp_stops_every_rank_at_one_batch_end_and_saves(tmp_path):
    """Lightning 2.6's own handler broadcasts from inside the signal handler: a collective
    mismatch (gloo aborts; NCCL hangs). InterruptCheckpoint stops both ranks after one batch."""
    result = run_worker("ddp_sigterm_worker.py", tmp_path, timeout=300)  # a hang fails here
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-4000:]
    stopped = [json.loads((tmp_path / f"stopped{r}.json").read_text()) for r in range(2)]
    # the batch in progress when the signal came finishes, then training goes on to the next
    # agreement of the ranks: after batch 8 (every 4 batches), not after every batch
    every = sigterm_worker.SYNC_EVERY
    step = math.ceil((sigterm_worker.SIGNAL_STEP + 1) / every) * every
    assert step == 8
    assert stopped == [{"global_step": step}] * 2
    saved = torch.load(tmp_path / "interrupted.ckpt", weights_only=True)
    assert saved["global_step"] == step
    assert len(saved["callbacks"]["RNGState"]["per_rank"]) == WORLD_SIZE


def test_posthoc_fitted_under_ddp_on_an_odd_validation_split_equals_one_process(tmp_path):
    """Every rank fits τ and T on the whole validation split (49 images, shards of 25 and 24:
    Lightning's equal-shape all_gather failed here) with rank 0's BatchNorm statistics (each
    rank's own after the last step gave another T), and gets what one process fits on the
    weights rank 0 saves."""
    import ddp_posthoc_worker as posthoc

    from ltlight.callbacks import PostHocLogitAdjustment, TemperatureScaling

    result = run_worker("ddp_posthoc_worker.py", tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"posthoc_rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    module = posthoc.make_module()
    datamodule = posthoc.make_datamodule()
    datamodule.setup("fit")
    module.load_state_dict(torch.load(tmp_path / "posthoc_weights.pt", weights_only=True))
    assert len(datamodule.val_data[1]) == posthoc.VAL_IMAGES
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        callbacks=[PostHocLogitAdjustment(), TemperatureScaling()],
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)
    assert module.temperature != 1.0
    # the same τ from the grid; T from LBFGS on logits equal up to float32 batch-size rounding
    assert ranks[0]["tau"] == pytest.approx(module.logit_adjustment_tau, abs=1e-12)
    assert ranks[0]["temperature"] == pytest.approx(module.temperature, rel=1e-4)
