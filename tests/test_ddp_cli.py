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


def ltlight(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m ltlight.cli ARGS`` in ``cwd``, as a fresh job (no rank inherited)."""
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "LTLIGHT_RUN_DIR"):
        env.pop(name, None)
    command = [sys.executable, "-m", "ltlight.cli", *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


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
    predictions.csv whose rows are the single process's, each naming its own image."""
    args = folder_args(odd_image_folder)
    fit = ltlight("fit", *args, *ONE_PROCESS, "--trainer.max_epochs=1", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    (checkpoint,) = tmp_path.glob("runs/folder/ce/*/checkpoints/last.ckpt")
    run = checkpoint.parent.parent
    single = ltlight("predict", *args, *ONE_PROCESS, f"--ckpt_path={checkpoint}", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    expected = read_rows(run / "predictions.csv")
    (run / "predictions.csv").unlink()

    ddp = ltlight("predict", *args, *DDP, f"--ckpt_path={checkpoint}", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert sorted(p.name for p in run.glob("predictions*.csv")) == ["predictions.csv"]
    assert f"predictions: {run / 'predictions.csv'} (15 rows)" in ddp.stdout
    rows = read_rows(run / "predictions.csv")
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
