"""The ``ltlight`` command under DDP: 2 CPU processes (gloo) against one process.

Each test runs the command as a user types it (``python -m ltlight.cli ...``); Lightning's DDP
launcher starts rank 1 by running the same command line again, ``torchrun`` starts both ranks.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fake_datasets import write_image_folder

from ltlight.data import ImageFolderLTDataModule

ROOT = Path(__file__).resolve().parents[1]
DDP = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
ONE_PROCESS = ["--trainer.accelerator=cpu", "--trainer.devices=1"]
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false"]
QUIET += ["--trainer.enable_model_summary=false"]


def run(command: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """``command`` in ``cwd``, as a fresh job (no rank inherited)."""
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(name, None)
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def ltlight(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "ltlight.cli", *args], cwd)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def odd_image_folder(tmp_path_factory) -> Path:
    """10 classes, 42 training images; 15 test images: shards of 8 and 7 on 2 ranks."""
    root = tmp_path_factory.mktemp("odd_folder")
    train = {f"class_{c}": n for c, n in enumerate([8, 6, 5, 4, 4, 3, 3, 3, 3, 3])}
    write_image_folder(str(root / "train"), train)
    write_image_folder(str(root / "test"), {name: 1 + (c < 5) for c, name in enumerate(train)})
    return root


def folder_args(root: Path) -> list[str]:
    """configs/folder/ce.yaml on ``root``, small: 32-pixel crops, ResNet-20, no workers."""
    return [
        "--config", str(ROOT / "configs" / "folder" / "ce.yaml"), *QUIET,
        f"--data.init_args.train={root}/train", f"--data.init_args.test={root}/test",
        "--data.init_args.val_per_class=1", "--data.init_args.num_workers=0",
        "--data.init_args.image_size=32", "--data.init_args.resize=36",
        "--data.init_args.batch_size=8", "--data.init_args.eval_batch_size=4",
        "--model.init_args.backbone.class_path=ltlight.models.resnet20",
    ]  # fmt: skip


@pytest.mark.slow
def test_predict_under_ddp_writes_one_file_equal_to_one_process(odd_image_folder, tmp_path):
    """Each rank predicts its shard (positions r, r + 2, ...) in batches of 4; rank 0 writes one
    predictions-last.csv whose rows are the single process's, each naming its own image."""
    args = folder_args(odd_image_folder)
    fit = ltlight("fit", *args, *ONE_PROCESS, "--trainer.max_epochs=1", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    (checkpoint,) = tmp_path.glob("runs/folder/ce/*/checkpoints/last.ckpt")
    run = checkpoint.parent.parent
    single = ltlight("predict", *args, *ONE_PROCESS, f"--ckpt_path={checkpoint}", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    expected = read_rows(run / "predictions-last.csv")
    (run / "predictions-last.csv").unlink()

    ddp = ltlight("predict", *args, *DDP, f"--ckpt_path={checkpoint}", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert sorted(p.name for p in run.glob("predictions*.csv")) == ["predictions-last.csv"]
    assert f"predictions: {run / 'predictions-last.csv'} (15 rows)" in ddp.stdout
    rows = read_rows(run / "predictions-last.csv")
    exact = ["index", "file", "label", "label_name", "predicted", "top5_classes"]
    assert [[r[c] for c in exact] for r in rows] == [[r[c] for c in exact] for r in expected]
    for column in ("confidence", "top5_probabilities"):  # other batches: float32 rounding
        got = torch.tensor([[float(v) for v in r[column].split()] for r in rows])
        want = torch.tensor([[float(v) for v in r[column].split()] for r in expected])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    data = ImageFolderLTDataModule(train=str(odd_image_folder / "train"),
                                   test=str(odd_image_folder / "test"))  # fmt: skip
    data.setup("predict")
    test = data.splits["test"]
    assert [r["file"] for r in rows] == test.paths and len(rows) == 15
    assert [int(r["label"]) for r in rows] == test.labels.tolist()
    assert [r["label_name"] for r in rows] == [Path(p).parent.name for p in test.paths]


# -- decoupled training in one command ---------------------------------------------------------

#: ``ltlight two_stage`` as ``python -m ltlight.cli two_stage``.
TWO_STAGE = ["-m", "ltlight.cli", "two_stage"]
STAGES = ("ce_stage1", "crt")
STAGE_ARGS = ["--trainer.max_epochs=2", "--trainer.enable_progress_bar=false"]
STAGE_ARGS += ["--trainer.enable_model_summary=false", "--data.init_args.eval_batch_size=16"]
STAGE_ARGS += [
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.save_dir=.",
]
METRICS = ["val/error", "val/balanced_error", "val/few_shot_error", "val/nll", "val/ece"]


def two_stage(launcher: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Digits-LT's cRT in one command on 2 CPU processes, started by ``launcher``."""
    configs = [str(ROOT / "configs" / "digits_lt" / f"{stage}.yaml") for stage in STAGES]
    return run([*launcher, *TWO_STAGE, *configs, "--", *DDP, *STAGE_ARGS], cwd)


def last_logged(run: Path) -> dict[str, float]:
    """The last validation's metrics of a run, as its CSVLogger wrote them (rank 0, synced)."""
    rows = read_rows(run / "lightning_logs" / "version_0" / "metrics.csv")
    last = [r for r in rows if r.get("val/balanced_error")][-1]
    return {name: float(last[name]) for name in METRICS}


def validate_in_one_process(checkpoint: Path) -> dict[str, float]:
    import lightning as L

    from ltlight import LongTailModule
    from ltlight.data import DigitsLTDataModule

    module = LongTailModule.load_from_checkpoint(checkpoint, map_location="cpu")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    data = DigitsLTDataModule(batch_size=64, eval_batch_size=16, val_per_class=10)
    (metrics,) = trainer.validate(module, datamodule=data, verbose=False)
    return {name: float(metrics[name]) for name in METRICS}


def check_two_stage_under_ddp(result: subprocess.CompletedProcess, cwd: Path) -> None:
    """One run folder per stage, written by rank 0; stage 2 starts from stage 1's checkpoint;
    what each stage logged (synced over the ranks) is what one process measures on its weights."""
    assert result.returncode == 0, result.stderr[-4000:]
    runs = {stage: sorted((cwd / "runs" / "digits_lt" / stage).iterdir()) for stage in STAGES}
    assert [len(folders) for folders in runs.values()] == [1, 1], runs  # no rank's extra folder
    (first,), (second,) = runs.values()
    for run in (first, second):
        assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.ckpt", "best.ckpt"}
        logged = last_logged(run)
        single = validate_in_one_process(run / "checkpoints" / "last.ckpt")
        assert logged == pytest.approx(single, abs=1e-6), run
    init_weights = torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)[
        "hyper_parameters"
    ]["init_weights"]
    assert (cwd / init_weights).resolve() == (first / "checkpoints" / "best.ckpt").resolve()


@pytest.mark.slow
def test_two_stage_under_ddp_launched_by_lightning(tmp_path):
    """Lightning's launcher starts rank 1 with the command line of rank 0: the whole two-stage
    command, whose stages rank 1 then runs as well, each in rank 0's run folder."""
    check_two_stage_under_ddp(two_stage([sys.executable], tmp_path), tmp_path)


@pytest.mark.slow
def test_two_stage_under_torchrun(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    check_two_stage_under_ddp(two_stage([*torchrun, "--nproc_per_node=2"], tmp_path), tmp_path)
