"""New images and a trained checkpoint: predictions for any folder or CSV, classes by name.

``ltlight predict --data.init_args.predict=<folder or CSV>`` writes one row per image file with
the checkpoint's class names; class folders renamed or added after training never shift labels.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from fake_datasets import write_image_folder, write_jpeg

from ltlight import LongTailModule
from ltlight.callbacks import PredictionWriter
from ltlight.data import ImageFolderLTDataModule
from ltlight.models import resnet20

ROOT = Path(__file__).resolve().parents[1]


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture
def new_images(tmp_path):
    """Unsorted new images, nested, no class folders; a hidden folder and a text file beside."""
    root = tmp_path / "new"
    write_jpeg(str(root / "camera" / "2024" / "img_b.jpg"), (200, 10, 10))
    write_jpeg(str(root / "camera" / "img_a.jpg"), (10, 200, 10))
    write_jpeg(str(root / "scan.jpg"), (10, 10, 200))
    write_jpeg(str(root / ".ipynb_checkpoints" / "scan-checkpoint.jpg"), (0, 0, 0))
    (root / "notes.txt").write_text("not an image")
    return root


def folder_data(tmp_path, **kwargs):
    return ImageFolderLTDataModule(
        train=str(tmp_path / "train"), num_workers=0, image_size=8, resize=8, **kwargs
    )


# -- the datamodule: a predict split of new images ---------------------------------------------
def test_a_folder_of_new_images_is_predicted_recursively_with_unknown_labels(tmp_path, new_images):
    write_image_folder(str(tmp_path / "train"), {"a": 3, "b": 2})
    data = folder_data(tmp_path, predict=str(new_images), batch_size=2)
    assert data.predict_files == ["scan.jpg", "camera/img_a.jpg", "camera/2024/img_b.jpg"]
    labels = [label for _, batch in data.predict_dataloader() for label in batch.tolist()]
    assert labels == [-1, -1, -1]  # unknown
    assert data.class_counts == [3, 2]  # training is untouched


def test_a_csv_of_new_images_needs_only_a_path_column(tmp_path, new_images):
    write_image_folder(str(tmp_path / "train"), {"a": 3, "b": 2})
    (new_images / "list.csv").write_bytes("path\nscan.jpg\ncamera/img_a.jpg\n".encode("utf-8-sig"))
    data = folder_data(tmp_path, predict=str(new_images / "list.csv"))
    assert data.predict_files == ["scan.jpg", "camera/img_a.jpg"]
    (new_images / "labelled.csv").write_text("path,label\nscan.jpg,b\ncamera/img_a.jpg,\n")
    data = folder_data(tmp_path, predict=str(new_images / "labelled.csv"))
    assert data.splits["predict"].labels.tolist() == [1, -1]


def test_new_images_predicted_by_a_trainer_have_one_row_each_and_an_empty_label(
    tmp_path, new_images
):
    write_image_folder(str(tmp_path / "train"), {"a": 3, "b": 2})
    (new_images / "labelled.csv").write_text("path,label\nscan.jpg,b\ncamera/img_a.jpg,\n")
    data = folder_data(tmp_path, predict=str(new_images / "labelled.csv"), batch_size=4)
    writer = PredictionWriter(str(tmp_path / "p.csv"))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[writer])  # fmt: skip
    trainer.predict(LongTailModule(resnet20(2)), datamodule=data, return_predictions=False)
    rows = read_rows(tmp_path / "p.csv")
    assert [(r["file"], r["label"], r["label_name"]) for r in rows] == [
        ("scan.jpg", "1", "b"),
        ("camera/img_a.jpg", "", ""),
    ]
    assert all(r["predicted_name"] in ("a", "b") for r in rows)


def test_a_missing_predict_source_is_one_line(tmp_path):
    write_image_folder(str(tmp_path / "train"), {"a": 3, "b": 2})
    with pytest.raises(FileNotFoundError, match=r"predict: '.*absent' does not exist"):
        folder_data(tmp_path, predict=str(tmp_path / "absent")).predict_dataloader()


# -- a checkpoint's class names, not the folders' sort order, index the classes ----------------
def test_class_folders_renamed_or_added_after_training_are_refused_by_name(tmp_path):
    write_image_folder(str(tmp_path / "train"), {"Trouser": 3, "T-shirt": 2})
    trained = folder_data(tmp_path).class_names
    assert trained == ["T-shirt", "Trouser"]
    write_image_folder(str(tmp_path / "test"), {"Trouser": 1})  # a test folder lacking a class
    data = folder_data(tmp_path, test=str(tmp_path / "test"))
    data.follow_class_names(trained)
    assert data.splits["test"].labels.tolist() == [1]
    os.rename(tmp_path / "train" / "Trouser", tmp_path / "train" / "Trousers")
    data = folder_data(tmp_path)
    assert data.class_names == ["T-shirt", "Trousers"]  # a new name: read as such ...
    data.follow_class_names(trained)  # ... but not under a checkpoint that does not know it
    with pytest.raises(ValueError, match=r"train/Trousers: class folder 'Trousers' is not one "):
        data.setup("test")
    os.rename(tmp_path / "train" / "Trousers", tmp_path / "train" / "Trouser")
    write_image_folder(str(tmp_path / "train"), {"Bag": 1})  # sorts first: every index moves
    data = folder_data(tmp_path)
    data.follow_class_names(trained)
    with pytest.raises(ValueError, match=r"'Bag' is not one of the 2 checkpoint's classes"):
        data.setup("test")


def test_a_checkpoint_of_other_classes_is_refused_when_restored(tmp_path):
    write_image_folder(str(tmp_path / "train"), {"a": 3, "b": 2, "c": 1})
    data = folder_data(tmp_path)
    assert data.state_dict() == {"class_names": ["a", "b", "c"]}
    data.load_state_dict({"class_names": ["a", "b", "c"]})
    with pytest.raises(ValueError, match=r"class 'c' is not one of the checkpoint's 2 classes"):
        data.load_state_dict({"class_names": ["a", "b"]})


# -- the command a user types ------------------------------------------------------------------
def ltlight(*args, cwd):
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "ltlight.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_ltlight_predicts_new_images_and_refuses_renamed_classes(tmp_path, new_images):
    write_image_folder(str(tmp_path / "data" / "train"), {"Trouser": 4, "T-shirt": 3, "Bag": 2})
    write_image_folder(str(tmp_path / "data" / "test"), {"Trouser": 1, "T-shirt": 1, "Bag": 1})
    args = [
        "--config", str(ROOT / "configs" / "folder" / "ce.yaml"), "--trainer.logger=false",
        f"--data.init_args.train={tmp_path}/data/train",
        f"--data.init_args.test={tmp_path}/data/test", "--data.init_args.val_per_class=1",
        "--data.init_args.num_workers=0", "--data.init_args.image_size=32",
        "--data.init_args.resize=36", "--data.init_args.batch_size=4",
        "--model.init_args.backbone.class_path=ltlight.models.resnet20",
        "--model.init_args.backbone.init_args.num_classes=3",
    ]  # fmt: skip
    fit = ltlight("fit", *args, "--trainer.max_epochs=1", "--run_name=r", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run = tmp_path / "runs" / "folder" / "ce" / "r"
    checkpoint = f"--ckpt_path={run}/checkpoints/last.ckpt"

    predict = ltlight("predict", *args, checkpoint, f"--data.init_args.predict={new_images}",
                      cwd=tmp_path)  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert "Predicting" in predict.stdout + predict.stderr  # Lightning's progress bar
    (written,) = run.glob("predictions*.csv")
    rows = read_rows(written)
    assert [r["file"] for r in rows] == ["scan.jpg", "camera/img_a.jpg", "camera/2024/img_b.jpg"]
    assert {r["label"] for r in rows} == {""}
    assert {r["predicted_name"] for r in rows} <= {"Bag", "T-shirt", "Trouser"}

    os.rename(tmp_path / "data" / "train" / "Bag", tmp_path / "data" / "train" / "Zz_Bag")
    os.rename(tmp_path / "data" / "test" / "Bag", tmp_path / "data" / "test" / "Zz_Bag")
    test = ltlight("test", *args, checkpoint, cwd=tmp_path)
    assert test.returncode == 2, test.stderr[-3000:]
    (error,) = [line for line in test.stderr.splitlines() if line.startswith("ltlight: error")]
    assert "class folder 'Zz_Bag' is not one of the 3 checkpoint's classes" in error, error
