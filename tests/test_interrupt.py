"""A real `ltlight fit` stopped by SIGTERM or Ctrl-C mid-step resumes to the uninterrupted result.

Each run is a subprocess of the console script's module with the Digits-LT GHM-C config (an EMA
state in the loss), class-balanced re-sampling from epoch 1 and seeded augmentation, so the loss,
the sampler and the augmentation all carry state across the interruption. ``signal_marker``
holds the run inside global step 11 (epoch 1, batch 3), after the backward pass and before the
optimiser step, until the signal has arrived. Resuming must give the same final weights (bit for
bit on the CPU) and the same final per-class table as one uninterrupted run.
"""

import functools
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from ltlight import LongTailModule
from ltlight.callbacks import InterruptCheckpoint
from ltlight.cli import main
from ltlight.data import DigitsLTDataModule
from ltlight.losses import LDAMLoss
from ltlight.models import DigitsNet

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "digits_lt" / "ghm.yaml"
OTHER_METHOD = ROOT / "configs" / "digits_lt" / "ce.yaml"
STOP_STEP = 11  # 8 batches per epoch: epoch 1, batch 3
RUN = [
    "--trainer.max_epochs=3",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.default_root_dir=run",
    "--run_name=r",
    "--data.init_args.augment=true",
    "--model.init_args.callbacks=[{class_path: ltlight.callbacks.DeferredResampling, "
    "init_args: {start_epoch: 1}}]",
]
METHOD_DIR = Path("run") / "digits_lt" / "ghm"  # <default_root_dir>/<dataset>/<method>
INTERRUPTED = METHOD_DIR / "r" / "interrupted.ckpt"


def environment():
    path = os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, WANDB_MODE="offline", PYTHONUNBUFFERED="1")


def start(cwd, config, *args):
    command = [sys.executable, "-m", "ltlight.cli", "fit", "--config", str(config), *RUN, *args]
    out, err = open(cwd / "stdout.txt", "w"), open(cwd / "stderr.txt", "w")  # noqa: SIM115
    with out, err:
        return subprocess.Popen(command, cwd=cwd, env=environment(), stdout=out, stderr=err)


def finish(process, cwd, timeout=600):
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, (cwd / "stdout.txt").read_text(), (cwd / "stderr.txt").read_text()


def fit(cwd, config=CONFIG, *args):
    return finish(start(cwd, config, *args), cwd)


def interrupt(cwd, signum, *args):
    """Start a run, send ``signum`` once it waits inside step STOP_STEP, return how it ended."""
    marker = cwd / "in_step.txt"
    process = start(
        cwd,
        CONFIG,
        *args,
        "--trainer.callbacks+=signal_marker.WaitForSignal",
        f"--trainer.callbacks.init_args.step={STOP_STEP}",
        f"--trainer.callbacks.init_args.marker={marker}",
    )
    deadline = time.monotonic() + 600
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not marker.exists():
        process.kill()
        rc, _, err = finish(process, cwd)
        pytest.fail(f"the run never reached step {STOP_STEP} (exit code {rc}):\n{err[-3000:]}")
    process.send_signal(signum)
    return finish(process, cwd, timeout=300)


def final_table(stdout):
    """The per-class table printed at the end of fit (rows and summary lines)."""
    start = stdout.rindex("per-class error")
    return [line for line in stdout[start:].splitlines() if "│" in line]


def outcome(cwd, stdout):
    checkpoint = torch.load(cwd / METHOD_DIR / "r" / "checkpoints" / "last.ckpt", weights_only=True)
    return checkpoint["global_step"], checkpoint["state_dict"], final_table(stdout)


def assert_same_outcome(resumed, reference):
    step, weights, table = resumed
    ref_step, ref_weights, ref_table = reference
    assert step == ref_step == 24  # last.ckpt is the last epoch's
    assert weights.keys() == ref_weights.keys()
    for key in weights:
        assert torch.equal(weights[key], ref_weights[key]), key
    assert table == ref_table


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The uninterrupted run, started at once and awaited only when a test compares with it."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    process = start(cwd, CONFIG)

    def result():
        rc, out, err = finish(process, cwd)
        assert rc == 0, err[-3000:]
        return outcome(cwd, out)

    yield functools.cache(result)
    if process.poll() is None:
        process.kill()


def check_interrupted_run(cwd, rc, err):
    """Exit code 128 + SIGTERM, a last line that says how to resume, a checkpoint on step 12."""
    assert rc == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err
    assert "--ckpt_path last" in err.strip().splitlines()[-1]
    saved = torch.load(cwd / INTERRUPTED, weights_only=True)
    assert saved["global_step"] == STOP_STEP + 1  # the step in progress finished first
    loader_state = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state == [{"epoch": 1, "batches_yielded": 4, "class_balanced": True}]


@pytest.mark.slow  # the Ctrl-C test below goes through the same SIGTERM path
def test_sigterm_mid_step_leaves_a_checkpoint_that_finishes_bit_exact(tmp_path, uninterrupted):
    rc, _, err = interrupt(tmp_path, signal.SIGTERM)
    check_interrupted_run(tmp_path, rc, err)

    rc, out, err = fit(tmp_path, CONFIG, f"--ckpt_path={tmp_path / INTERRUPTED}")
    assert rc == 0, err[-3000:]
    assert_same_outcome(outcome(tmp_path, out), uninterrupted())
    assert not (tmp_path / INTERRUPTED).exists()  # spent: removed once the resumed fit finished


def test_ctrl_c_mid_step_stops_at_the_batch_end_and_ckpt_path_last_finishes_bit_exact(
    tmp_path, uninterrupted, monkeypatch, capsys
):
    rc, out, err = interrupt(tmp_path, signal.SIGINT)
    assert "Ctrl-C: finishing this batch" in out + err
    check_interrupted_run(tmp_path, rc, err)
    digest = sha256(tmp_path / INTERRUPTED)

    # Another method's "last" is not this run: an error that says where it looked.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(OTHER_METHOD), *RUN, "--ckpt_path=last"])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-2]
    assert "ckpt_path" in last and str(Path("run", "digits_lt", "ce")) in last, last
    # The same method with another data seed does not continue this run...
    # two epochs: RUN's DRS switches at epoch 1, which must lie inside the run
    other_seed = [*RUN, "--data.init_args.seed=3", "--run_name=seed3", "--trainer.max_epochs=2"]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIG), *other_seed, "--ckpt_path=last"])
    assert exit_info.value.code == 2
    assert "data.seed" in capsys.readouterr().err
    # ... and without --ckpt_path it is a new run (Lightning would resume from "last").
    main(["fit", "--config", str(CONFIG), *other_seed])
    out = capsys.readouterr()
    assert "Restored" not in out.out + out.err
    assert torch.load(tmp_path / METHOD_DIR / "seed3" / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert sha256(tmp_path / INTERRUPTED) == digest

    rc, out, err = fit(tmp_path, CONFIG, "--ckpt_path=last")
    assert rc == 0, err[-3000:]
    assert re.search(r"Restored all states from the checkpoint at \S*interrupted", out + err)
    assert_same_outcome(outcome(tmp_path, out), uninterrupted())
    assert not (tmp_path / INTERRUPTED).exists()


def test_sigterm_when_the_checkpoint_folder_cannot_be_written_says_where_it_saved(
    tmp_path, monkeypatch
):
    # A folder that cannot be created (a file is in the way) fails even for root, whom a
    # read-only folder would not stop. The checkpoint goes to the temporary folder, one line says.
    blocked = tmp_path / "blocker" / "interrupted"
    blocked.parent.write_text("a file, not a folder")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    callbacks = (
        "[{class_path: lightning.pytorch.callbacks.ModelCheckpoint, init_args: {filename: last}}, "
        f"{{class_path: ltlight.callbacks.InterruptCheckpoint, init_args: {{dirpath: {blocked}}}}}]"
    )
    rc, _, err = interrupt(tmp_path, signal.SIGTERM, f"--trainer.callbacks={callbacks}")
    assert rc == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    (fallback,) = (tmp_path / "tmp").glob("ltlight-*-interrupted.ckpt")
    assert f"could not write {blocked / 'interrupted.ckpt'}" in last, last
    assert f"saved it instead to {fallback}" in last and f"--ckpt_path {fallback}" in last, last
    assert torch.load(fallback, weights_only=True)["global_step"] == STOP_STEP + 1


# --- InterruptCheckpoint in-process: what it leaves alone ----------------------------------------


def small_fit(tmp_path, module, callbacks, stage="fit"):
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    getattr(trainer, stage)(module, datamodule=DigitsLTDataModule())


def test_an_error_before_training_leaves_an_earlier_interrupted_checkpoint_alone(tmp_path):
    saved = tmp_path / "last.ckpt"
    saved.write_bytes(b"an interrupted run")
    module = LongTailModule(DigitsNet(), loss=LDAMLoss(class_counts=[5, 4, 3]))
    with pytest.raises(ValueError, match="class_counts"):
        small_fit(tmp_path, module, [InterruptCheckpoint(dirpath=tmp_path)])
    assert saved.read_bytes() == b"an interrupted run"


def test_validate_leaves_an_interrupted_checkpoint_alone(tmp_path):
    saved = tmp_path / "last.ckpt"
    saved.write_bytes(b"an interrupted run")
    module = LongTailModule(DigitsNet())
    small_fit(tmp_path, module, [InterruptCheckpoint(dirpath=tmp_path)], stage="validate")
    assert saved.read_bytes() == b"an interrupted run"  # OnExceptionCheckpoint removes it here
