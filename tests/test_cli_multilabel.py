"""The `ltlight` command on a generated multi-label CSV folder, as a user types it:
fit → test → predict with configs/folder_multilabel, the predictions checked against the
checkpoint's own sigmoids."""

import csv

import pytest
import torch
from fake_multilabel import CLASSES, TEST_SETS, write_multilabel_csvs
from test_runs import QUIET, ROOT, ltlight

from ltlight import LongTailModule
from ltlight.data import ImageFolderLTDataModule

CONFIG = ROOT / "configs" / "folder_multilabel" / "bce.yaml"


@pytest.mark.slow
def test_fit_test_predict_round_trip_on_a_multilabel_csv_folder(tmp_path):
    csvs = write_multilabel_csvs(str(tmp_path / "data"), "wide")
    data_args = [
        f"--data.init_args.train={csvs['train']}",
        f"--data.init_args.test={csvs['test']}",
        "--data.init_args.val_fraction=0.25",
        "--data.init_args.batch_size=3",  # 9 training images: no batch of one (BatchNorm)
        "--data.init_args.num_workers=0",
        "--data.init_args.image_size=32",
        "--data.init_args.resize=36",
        # a small backbone: the command is the subject, not ResNet-50
        "--model.init_args.backbone={class_path: ltlight.models.resnet20, init_args: "
        f"{{num_classes: {len(CLASSES)}}}}}",
    ]
    fit = ltlight("fit", "--config", str(CONFIG), "--trainer.max_epochs=2", *QUIET, *data_args,
                  cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "head (> 100) 0 · medium (20–100) 0 · tail (< 20) 3 classes" in fit.stdout + fit.stderr
    (run,) = (tmp_path / "runs" / "folder_multilabel" / "bce").iterdir()
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file() and (run / "checkpoints" / "best.ckpt").is_file()  # val/map

    test = ltlight("test", "--config", str(CONFIG), *QUIET, *data_args,
                   f"--ckpt_path={checkpoint}", cwd=tmp_path)  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/map" in test.stdout

    predict = ltlight("predict", "--config", str(CONFIG), *QUIET, *data_args,
                      f"--ckpt_path={checkpoint}", cwd=tmp_path)  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-3000:]
    predictions = run / "predictions-last.csv"  # named after the checkpoint
    with open(predictions, newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["index", "file", "labels", "label_names", "predicted",
                             "predicted_names", "probabilities"]  # fmt: skip
    assert [r["file"] for r in rows] == [f"images/test_{i}.jpg" for i in range(len(TEST_SETS))]
    assert [r["label_names"] for r in rows] == [
        "|".join(c for c in CLASSES if c in s) for s in TEST_SETS
    ]
    # every label's probability: the checkpoint's sigmoids on the test split, computed here
    module = LongTailModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    data = ImageFolderLTDataModule(train=csvs["train"], test=csvs["test"], val_fraction=0.25,
                                   num_workers=0, image_size=32, resize=36)  # fmt: skip
    with torch.no_grad():
        logits = torch.cat([module(images) for images, _ in data.test_dataloader()])
    written = torch.tensor([[float(p) for p in r["probabilities"].split()] for r in rows])
    torch.testing.assert_close(written, torch.sigmoid(logits.double()).float(), atol=2e-6, rtol=0)
    above = [" ".join(str(c) for c in range(3) if p[c] >= 0.5) for p in torch.sigmoid(logits)]
    assert [r["predicted"] for r in rows] == above  # no thresholds fitted: 0.5 each
