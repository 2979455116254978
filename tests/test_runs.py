"""One folder per run: `ltlight` never mixes two runs, never resumes one unasked, and refuses a
checkpoint that is not what the command says.

The fits are subprocesses of the console script's module (the CLI is the subject); commands that
must stop before training run ``main`` in-process.
"""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from ltlight import LongTailModule
from ltlight.callbacks import BestCheckpoint, PredictionWriter
from ltlight.callbacks.run_safety.finite_loss import NonFiniteLossError
from ltlight.checkpoints import AtomicCheckpointIO, read_checkpoint, write_atomically
from ltlight.cli import LongTailCLI, main
from ltlight.cli.runs import (
    config_differences,
    find_last_checkpoint,
    lock_run,
    new_run_dir,
    unlock_run,
)
from ltlight.data import DigitsLTDataModule, ImageFolderLTDataModule
from ltlight.models import DigitsNet, resnet32

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "digits_lt"
QUIET = [
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def environment():
    path = os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, WANDB_MODE="offline", PYTHONUNBUFFERED="1")


def ltlight(*args, cwd):
    command = [sys.executable, "-m", "ltlight.cli", *args]
    return subprocess.run(
        command, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=600
    )


def run_main(*args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


@pytest.fixture(scope="module")
def ce_run(tmp_path_factory):
    """`ltlight fit` of Digits-LT CE for 2 epochs: the working folder and the run folder."""
    cwd = tmp_path_factory.mktemp("ce_run")
    fit = ltlight(
        "fit", "--config", str(CONFIGS / "ce.yaml"), "--trainer.max_epochs=2", *QUIET, cwd=cwd
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    (run,) = (cwd / "runs" / "digits_lt" / "ce").iterdir()
    return cwd, run


def test_a_run_writes_its_own_folder_with_the_last_epoch_as_last_ckpt(ce_run):
    cwd, run = ce_run
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "config.yaml"]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 16
    assert "ltlight.losses.CrossEntropyLoss" in (run / "config.yaml").read_text()
    assert not (cwd / "runs" / "digits_lt" / "config.yaml").exists()


@pytest.mark.parametrize("val_per_class", [0, 10])
def test_the_best_epoch_is_kept_only_when_validation_is_not_the_test_split(val_per_class, tmp_path):
    best = BestCheckpoint(dirpath=str(tmp_path))
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, limit_train_batches=2, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[best], default_root_dir=tmp_path)  # fmt: skip
    data = DigitsLTDataModule(val_per_class=val_per_class)
    trainer.fit(LongTailModule(DigitsNet()), datamodule=data)
    assert best.validates_on_test == (val_per_class == 0)
    if val_per_class == 0:  # selecting on the test split is not allowed: nothing saved
        assert list(tmp_path.glob("*.ckpt")) == [] and best.best_model_path == ""
    else:
        assert [p.name for p in tmp_path.glob("*.ckpt")] == ["best.ckpt"]
        assert float(best.best_model_score) <= float(trainer.callback_metrics["val/balanced_error"])


def test_the_same_command_twice_makes_two_runs_and_resumes_neither(tmp_path):
    command = ["fit", "--config", str(CONFIGS / "ce.yaml"), "--trainer.max_epochs=1", *QUIET]
    first, second = ltlight(*command, cwd=tmp_path), ltlight(*command, cwd=tmp_path)
    assert first.returncode == second.returncode == 0, second.stderr[-3000:]
    assert "Restored" not in second.stdout + second.stderr
    runs = sorted((tmp_path / "runs" / "digits_lt" / "ce").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0


def test_a_run_name_or_run_dir_that_holds_a_run_is_refused_and_the_run_kept(
    ce_run, monkeypatch, capsys
):
    cwd, run = ce_run
    monkeypatch.chdir(cwd)
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    named = Path("runs", "digits_lt", "ce", run.name)
    for argument, value, folder in (("run_name", run.name, named), ("run_dir", str(run), run)):
        code = run_main(
            "fit", "--config", str(CONFIGS / "ce.yaml"), *QUIET, f"--{argument}={value}"
        )
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"{argument}: {folder} already holds a run (config.yaml" in err, err
        assert "--ckpt_path last" in err and "Traceback" not in err
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


def test_a_second_ckpt_path_last_is_refused_while_the_first_holds_the_run(
    ce_run, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "runs" / "digits_lt" / "ce" / "copy"
    shutil.copytree(ce_run[1], run)
    monkeypatch.chdir(tmp_path)
    hold = "import sys, time; from pathlib import Path; from ltlight.cli.runs import lock_run; "
    hold += "lock_run(Path(sys.argv[1])); print('held', flush=True); time.sleep(300)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run)], env=environment(),
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        code = run_main("fit", "--config", str(CONFIGS / "ce.yaml"), *QUIET, "--ckpt_path=last")
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"{run.resolve()} is in use by another ltlight command (process {holder.pid})" in err
    finally:
        holder.kill()  # SIGKILL: no clean-up runs in the holder
        holder.wait()
    lock_run(run)  # the system released the killed process's lock
    unlock_run(run)


def test_a_refused_data_set_up_leaves_no_run_folder_with_only_a_wandb_run(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    code = run_main(
        "fit", "--config", str(CONFIGS / "ce.yaml"), *quiet, "--data=bad_data.SetupFails"
    )
    assert code == 2 and "first line of the real cause" in capsys.readouterr().err
    assert list((tmp_path / "runs" / "digits_lt" / "ce").iterdir()) == []


@pytest.mark.slow
def test_sigterm_during_start_up_exits_143_with_a_message_and_leaves_no_run_folder(tmp_path):
    marker = tmp_path / "in_setup.txt"
    command = [sys.executable, "-m", "ltlight.cli", "fit", "--config", str(CONFIGS / "ce.yaml")]
    command += ["--data=signal_marker.WaitInSetup", f"--data.init_args.marker={marker}"]
    command += ["--trainer.enable_progress_bar=false"]  # W&B stays on (offline)
    process = subprocess.Popen(command, cwd=tmp_path, env=environment(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        "ltlight: stopped by SIGTERM outside training (starting or finishing)"
    )
    assert list((tmp_path / "runs" / "digits_lt" / "ce").iterdir()) == []


def test_ckpt_path_last_after_sigkill_continues_from_the_last_finished_epoch(tmp_path):
    marker = tmp_path / "in_step.txt"
    command = [sys.executable, "-m", "ltlight.cli", "fit", "--config", str(CONFIGS / "ce.yaml")]
    command += ["--trainer.max_epochs=3", *QUIET, "--run_name=killed"]
    hold = [
        "--trainer.callbacks+=signal_marker.WaitForSignal",
        "--trainer.callbacks.init_args.step=11",
        f"--trainer.callbacks.init_args.marker={marker}",
    ]
    process = subprocess.Popen(
        [*command, *hold],
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), process.communicate()[1][-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    run = tmp_path / "runs" / "digits_lt" / "ce" / "killed"
    assert not (run / "interrupted.ckpt").exists()  # SIGKILL leaves only the epoch checkpoint

    resumed = ltlight(*command[3:], "--ckpt_path=last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Restored all states from the checkpoint at {Path('runs/digits_lt/ce/killed')}" in (
        resumed.stdout + resumed.stderr
    )
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["global_step"] == 24


def test_ckpt_path_last_without_a_matching_run_is_an_error_that_lists_the_runs(
    ce_run, monkeypatch, capsys
):
    cwd, run = ce_run
    monkeypatch.chdir(cwd)
    base = ["fit", "--config", str(CONFIGS / "ce.yaml"), *QUIET, "--ckpt_path=last"]
    assert run_main(*base, "--model.init_args.loss.init_args.reduction=sum") == 2
    err = capsys.readouterr().err
    assert str(run.relative_to(cwd)) in err and "model.loss.reduction" in err, err
    assert (
        run_main("validate", "--config", str(CONFIGS / "focal.yaml"), *QUIET, "--ckpt_path=last")
        == 2
    )
    err = capsys.readouterr().err
    assert "no runs there" in err and str(Path("runs", "digits_lt", "focal")) in err, err


def test_a_checkpoint_of_another_method_or_dataset_is_refused_naming_the_fields(
    ce_run, monkeypatch, capsys
):
    cwd, run = ce_run
    monkeypatch.chdir(cwd)
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    validate = ["validate", *QUIET, f"--ckpt_path={checkpoint}"]
    assert run_main(*validate, "--config", str(CONFIGS / "ldam_drw.yaml")) == 2
    err = capsys.readouterr().err
    assert checkpoint in err
    for field in ("model.loss.class_path", "model.backbone.normed", "model.callbacks"):
        assert field in err, err
    other_data = ["--data=ltlight.data.FashionMNISTLTDataModule", "--data.init_args.download=false"]
    assert run_main(*validate, "--config", str(CONFIGS / "ce.yaml"), *other_data) == 2
    assert "data.class_path" in capsys.readouterr().err


def test_use_ckpt_config_takes_the_model_from_the_checkpoint(ce_run):
    cwd, run = ce_run
    checkpoint = run / "checkpoints" / "last.ckpt"
    result = ltlight(
        "validate",
        "--config",
        str(CONFIGS / "ldam_drw.yaml"),
        *QUIET,
        f"--ckpt_path={checkpoint}",
        "--use_ckpt_config=true",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = (run / "validate_config.yaml").read_text()
    assert "CrossEntropyLoss" in saved and "LDAMLoss" not in saved


def test_a_loss_that_turns_nan_stops_the_run_naming_epoch_and_batch_and_keeps_the_last_good_epoch(
    tmp_path,
):
    result = ltlight(
        "fit",
        "--config",
        str(CONFIGS / "ce.yaml"),
        "--trainer.max_epochs=3",
        *QUIET,
        "--run_name=nan",
        "--model.init_args.loss=bad_training.NaNFromBatch",
        "--model.init_args.loss.init_args.batch=13",  # 8 batches per epoch: epoch 1, batch 5
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert "the training loss became nan at epoch 1, batch 5" in last, last
    run = tmp_path / "runs" / "digits_lt" / "ce" / "nan"
    assert str(Path("runs/digits_lt/ce/nan/checkpoints/last.ckpt")) in last
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0
    assert all(torch.isfinite(w).all() for w in checkpoint["state_dict"].values())
    assert not (run / "interrupted.ckpt").exists()


class OverflowBatchNormFrom(L.Callback):
    """From epoch ``epoch`` on, the first BatchNorm's running variance is inf (as after an
    overflow): training normalises with batch statistics, so its loss stays finite."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            bn = next(m for m in pl_module.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var.fill_(float("inf"))


def test_a_checkpoint_with_infinite_batchnorm_statistics_is_never_saved_nor_named(tmp_path):
    last = ModelCheckpoint(dirpath=tmp_path, filename="last", enable_version_counter=False)
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, limit_train_batches=2,
                        limit_val_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[OverflowBatchNormFrom(1), last])  # fmt: skip
    with pytest.raises(
        NonFiniteLossError, match=r"backbone\.body\.1\.running_var holds NaN or inf"
    ) as error:
        trainer.fit(LongTailModule(DigitsNet()), datamodule=DigitsLTDataModule(val_per_class=5))
    assert f"The last checkpoint from before it is {tmp_path / 'last.ckpt'}." in str(error.value)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def broken_copies(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """Checkpoint files damaged in each way, and a word the error must say about each."""
    data = good.read_bytes()
    with zipfile.ZipFile(good) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
        offset = member.header_offset + 30 + len(member.filename) + len(member.extra)
    flipped = bytearray(data)
    flipped[offset + member.compress_size // 2] ^= 0xFF
    cases = {
        "damaged": (bytes(flipped), "CRC"),
        "truncated": (data[: len(data) // 2], "truncated"),
        "empty": (b"", "empty"),
        "not a checkpoint": (b"name,label\nimage.png,3\n", "not a PyTorch checkpoint"),
    }
    copies = {}
    for name, (content, word) in cases.items():
        path = folder / f"{name.replace(' ', '_')}.ckpt"
        path.write_bytes(content)
        copies[name] = (path, word)
    torch.save({"weights": torch.ones(2)}, folder / "plain.pt")
    copies["torch file, not Lightning"] = (folder / "plain.pt", "not a Lightning checkpoint")
    return copies


def test_a_broken_checkpoint_file_is_named_with_what_is_wrong(
    ce_run, tmp_path, monkeypatch, capsys
):
    _, run = ce_run
    monkeypatch.chdir(tmp_path)
    for name, (path, word) in broken_copies(run / "checkpoints" / "last.ckpt", tmp_path).items():
        with pytest.raises(ValueError, match=word):
            read_checkpoint(path)
        code = run_main(
            "validate", "--config", str(CONFIGS / "ce.yaml"), *QUIET, f"--ckpt_path={path}"
        )
        err = capsys.readouterr().err
        assert code == 2 and str(path) in err and word in err and "Traceback" not in err, name


def test_config_differences_name_nested_arguments_whichever_way_they_are_written():
    saved = {"_class_path": "m.M", "loss": {"class_path": "l.LDAM", "init_args": {"s": 30}}}
    current = {"class_path": "m.M", "init_args": {"loss": {"_class_path": "l.LDAM", "s": 30.0}}}
    assert config_differences(saved, current, "model") == []
    current["init_args"]["loss"]["s"] = 16.0
    current["init_args"]["compile"] = True  # how it runs, not what it is
    assert config_differences(saved, current, "model") == ["model.loss.s"]


def test_find_last_checkpoint_takes_the_newest_matching_run(tmp_path):
    config = "model: {class_path: m.M}\ndata: {class_path: d.D, init_args: {seed: 0}}\n"
    for name, seed in (("a", 0), ("b", 1), ("c", 0)):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "config.yaml").write_text(config.replace("seed: 0", f"seed: {seed}"))
        torch.save({"state_dict": {}}, tmp_path / name / "checkpoints" / "last.ckpt")
        time.sleep(0.02)
    torch.save({"state_dict": {}}, tmp_path / "a" / "interrupted.ckpt")  # the newest of all
    current = {
        "model": {"class_path": "m.M"},
        "data": {"class_path": "d.D", "init_args": {"seed": 0}},
    }
    assert find_last_checkpoint(tmp_path, current) == (
        tmp_path / "a",
        tmp_path / "a" / "interrupted.ckpt",
    )
    shutil.rmtree(tmp_path / "a")
    assert find_last_checkpoint(tmp_path, current)[0] == tmp_path / "c"


def test_ckpt_path_last_skips_an_unreadable_checkpoint_saying_so_and_takes_the_newest_intact(
    tmp_path, capsys
):
    config = "model: {class_path: m.M}\ndata: {class_path: d.D}\n"
    current = {"model": {"class_path": "m.M"}, "data": {"class_path": "d.D"}}
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(config)
    torch.save({"state_dict": {"w": torch.ones(3)}}, run / "checkpoints" / "last.ckpt")
    time.sleep(0.02)
    (run / "interrupted.ckpt").write_bytes(b"")  # a disk that was full when SIGTERM came
    assert find_last_checkpoint(tmp_path, current) == (run, run / "checkpoints" / "last.ckpt")
    err = capsys.readouterr().err
    assert (
        f"skipping an unreadable checkpoint: ckpt_path: {run / 'interrupted.ckpt'} is empty" in err
    )
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ValueError, match="none matches") as error:
        find_last_checkpoint(tmp_path, current)
    assert "interrupted.ckpt is empty" in str(error.value)
    assert "last.ckpt is not a PyTorch checkpoint" in str(error.value)


def test_a_checkpoint_save_that_fails_leaves_the_old_file_whole_and_no_partial_file(tmp_path):
    path = tmp_path / "last.ckpt"
    write_atomically(path, lambda file: torch.save({"state_dict": {"w": torch.ones(2)}}, file))

    class FullDisk:
        def __reduce__(self):  # pickled after the tensors' bytes were written
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(10**5), "x": FullDisk()}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.ones(2))


# --- the path after training: predictions and a model that takes raw images -----------------


def reference_probabilities(checkpoint):
    """The checkpoint's probabilities on Digits-LT's test split through the datamodule's own
    loader (which normalises on the device): the reference for `predict` and `predict_images`."""
    module = LongTailModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    data = DigitsLTDataModule()
    data.setup("test")
    with torch.no_grad():
        batches = [(module(images), labels) for images, labels in data.test_dataloader()]
    logits = torch.cat([logits for logits, _ in batches]).double()
    return module, torch.softmax(logits, 1), torch.cat([labels for _, labels in batches]), data


def test_predict_writes_predictions_named_after_the_checkpoint_and_prints_the_path(ce_run):
    cwd, run = ce_run
    checkpoint = run / "checkpoints" / "last.ckpt"
    result = ltlight("predict", "--config", str(CONFIGS / "ce.yaml"), *QUIET,
                     f"--ckpt_path={checkpoint}", cwd=cwd)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    path = run / "predictions-last.csv"
    assert f"predictions: {path.resolve()} (500 rows)" in result.stdout.replace(
        str(cwd), str(cwd.resolve())
    )
    assert "batch indices" not in result.stderr  # no warning about what the writer does not use
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["index", "label", "label_name", "predicted", "predicted_name",
                             "confidence", "top5_classes", "top5_probabilities"]  # fmt: skip
    _, probs, labels, _ = reference_probabilities(checkpoint)
    assert [int(r["index"]) for r in rows] == list(range(500))
    assert [int(r["label"]) for r in rows] == labels.tolist()
    assert [int(r["predicted"]) for r in rows] == probs.argmax(1).tolist()
    confidence = torch.tensor([float(r["confidence"]) for r in rows], dtype=torch.float64)
    torch.testing.assert_close(confidence, probs.max(1).values, atol=2e-6, rtol=0)
    top5 = torch.tensor([[int(c) for c in r["top5_classes"].split()] for r in rows])
    assert torch.equal(top5, probs.topk(5, dim=1).indices)


def test_predicting_with_two_checkpoints_of_a_run_keeps_both_files(ce_run):
    cwd, run = ce_run
    best = run / "checkpoints" / "best.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", best)
    for checkpoint in (run / "checkpoints" / "last.ckpt", best):
        result = ltlight("predict", "--config", str(CONFIGS / "ce.yaml"), *QUIET,
                         f"--ckpt_path={checkpoint}", cwd=cwd)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    best.unlink()
    assert (run / "predictions-last.csv").read_text() == (run / "predictions-best.csv").read_text()
    assert {p.name for p in run.glob("predict_config*")} == {
        "predict_config-last.yaml",
        "predict_config-best.yaml",
    }
    assert not (run / "predictions.csv").exists()


def test_predict_without_a_checkpoint_is_refused(ce_run, monkeypatch, capsys):
    monkeypatch.chdir(ce_run[0])
    runs_before = sorted((ce_run[0] / "runs" / "digits_lt" / "ce").iterdir())
    assert run_main("predict", "--config", str(CONFIGS / "ce.yaml"), *QUIET) == 2
    assert "predict needs the trained weights" in capsys.readouterr().err
    # the timed folder reserved for the refused run is gone again; the earlier run is kept
    assert sorted((ce_run[0] / "runs" / "digits_lt" / "ce").iterdir()) == runs_before


def test_a_start_refused_on_an_argument_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(CONFIGS / "ce.yaml")
    assert run_main("fit", "--config", config, "--model.init_args.ece_bins=0", *QUIET) == 2
    assert "ece_bins must be an integer >= 1, got 0" in capsys.readouterr().err
    assert list((tmp_path / "runs" / "digits_lt" / "ce").iterdir()) == []


def test_a_loaded_checkpoint_predicts_raw_uint8_images_as_the_loader_does(ce_run):
    _, run = ce_run
    module, probs, _, data = reference_probabilities(run / "checkpoints" / "last.ckpt")
    images, _ = data.load_split(train=False)  # uint8 pixels, as a user has them
    assert images.dtype == torch.uint8
    torch.testing.assert_close(module.predict_images(images).double(), probs, atol=1e-6, rtol=0)


def test_prediction_writer_writes_the_calibrated_probabilities(tmp_path):
    module = LongTailModule(DigitsNet())
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
    data = DigitsLTDataModule()
    trainer.fit(module, datamodule=data)
    module.temperature = 2.0
    writer = PredictionWriter(str(tmp_path / "p.csv"), top_k=3)
    trainer.callbacks.append(writer)
    trainer.predict(module, datamodule=data, return_predictions=False)
    with open(tmp_path / "p.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    with torch.no_grad():
        module.eval()
        logits = torch.cat([module(x) for x, _ in data.predict_dataloader()]).double()
    expected = torch.softmax(logits / 2.0, 1).topk(3, dim=1).values  # z / T
    got = torch.tensor([[float(p) for p in r["top3_probabilities"].split()] for r in rows])
    torch.testing.assert_close(got.double(), expected, atol=2e-6, rtol=0)
    assert writer.rows == len(rows) == 500


def test_predictions_of_an_image_folder_name_each_file_and_class(image_folder_dir, tmp_path):
    data = ImageFolderLTDataModule(
        train=str(image_folder_dir / "train"),
        test=str(image_folder_dir / "test"),
        image_size=32,
        resize=36,
        num_workers=0,
        batch_size=4,
    )
    data.setup("predict")
    module = LongTailModule(resnet32(num_classes=data.num_classes))
    writer = PredictionWriter(str(tmp_path / "p.csv"))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[writer])  # fmt: skip
    trainer.predict(module, datamodule=data, return_predictions=False)
    with open(tmp_path / "p.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    test = data.splits["test"]
    assert [r["file"] for r in rows] == test.paths
    assert [int(r["label"]) for r in rows] == test.labels.tolist()
    # the file's folder is its class; names come from the datamodule
    assert [r["label_name"] for r in rows] == [Path(p).parent.name for p in test.paths]
    assert {r["predicted_name"] for r in rows} <= set(data.class_names)


@pytest.mark.parametrize("rank", ["LOCAL_RANK", "RANK", "NODE_RANK"])
def test_a_process_of_another_rank_than_zero_creates_no_run_folder(rank, tmp_path, monkeypatch):
    """Under DDP only rank 0 creates the timed folder; the others take it at set-up."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(rank, "1")
    cli = LongTailCLI(args=["--config", str(CONFIGS / "ce.yaml"), *QUIET], run=False)
    assert cli.run_dir.parent == Path("runs", "digits_lt", "ce")
    assert not (tmp_path / "runs").exists()
    monkeypatch.setenv(rank, "0")
    cli = LongTailCLI(args=["--config", str(CONFIGS / "ce.yaml"), *QUIET], run=False)
    assert cli.run_dir.is_dir()


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    folders = {new_run_dir(tmp_path) for _ in range(5)}  # well within one second
    assert len(folders) == 5 and all(folder.is_dir() for folder in folders)
