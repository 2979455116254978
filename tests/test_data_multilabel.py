"""Multi-label image files: both CSV forms, the uncertain policy, positives as class counts,
(B, C) float targets through the loader, the per-image (per-patient) validation carve, the
VOC-MLT / COCO-MLT / ChestX-ray14 readers on fixtures in their releases' formats, and bad input
named by file and line."""

import logging
import os

import numpy as np
import pytest
import torch
from fake_datasets import read_code
from fake_multilabel import (
    CLASSES,
    COCO_CATEGORIES,
    CXR_ROWS,
    CXR_TEST_PATIENTS,
    TEST_SETS,
    TRAIN_SETS,
    write_chestxray14,
    write_coco_mlt,
    write_multilabel_csvs,
    write_voc_mlt,
)
from test_data_files_bad import check_error

from ltlight.data import (
    ChestXray14DataModule,
    COCOMLTDataModule,
    ImageFolderLTDataModule,
    VOCMLTDataModule,
)
from ltlight.data.files.datamodule import IMAGENET_MEAN, IMAGENET_STD
from ltlight.data.files.multilabel import read_multilabel_csv
from ltlight.data.files.voc_coco_mlt import VOC_CLASSES

SMALL = dict(num_workers=0, batch_size=4, image_size=16, resize=20)


def expected_targets(sets, classes=CLASSES):
    """The (N, C) 0/1 targets of a list of class sets, written again from the sets."""
    return torch.tensor([[float(c in s) for c in classes] for s in sets])


@pytest.fixture(scope="module")
def csv_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("multilabel"))
    forms = {form: write_multilabel_csvs(root, form) for form in ("names", "indices", "wide")}
    return root, forms


@pytest.mark.parametrize("form", ["names", "indices", "wide"])
def test_list_form_and_wide_form_read_the_same_targets(csv_root, form):
    _, forms = csv_root
    names = list(CLASSES) if form == "indices" else None
    data = ImageFolderLTDataModule(train=forms[form]["train"], test=forms[form]["test"],
                                   class_names=names, **SMALL)  # fmt: skip
    assert data.multi_label and data.class_names == list(CLASSES)
    assert torch.equal(data.splits["train"].labels, expected_targets(TRAIN_SETS))
    assert torch.equal(data.splits["test"].labels, expected_targets(TEST_SETS))
    positives = [sum(c in s for s in TRAIN_SETS) for c in CLASSES]
    assert data.class_counts == positives == [9, 5, 2]


def test_wide_form_uncertain_and_missing_entries_follow_the_policy(tmp_path):
    (tmp_path / "cxr.csv").write_text(
        "path,Edema,Effusion\na.png,1,-1\nb.png,,0.0\nc.png,-1.0,1.0\n"
    )
    read = {p: read_multilabel_csv(str(tmp_path / "cxr.csv"), uncertain=p)[0].labels
            for p in ("ignore", "negative", "positive")}  # fmt: skip
    nan = float("nan")
    expected = {
        "ignore": [[1, nan], [nan, 0], [nan, 1]],
        "negative": [[1, 0], [0, 0], [0, 1]],
        "positive": [[1, 1], [1, 0], [1, 1]],
    }
    for policy, rows in expected.items():
        assert torch.equal(read[policy].isnan(), torch.tensor(rows).isnan())
        assert torch.equal(read[policy].nan_to_num(7), torch.tensor(rows).nan_to_num(7))


def test_class_counts_are_positives_and_the_groups_are_printed(tmp_path, caplog):
    # 150 / 50 / 5 positives: one head, one medium, one tail class (> 100, 20-100, < 20);
    # uncertain entries are not positives
    rows = [f"i{k}.jpg,1,{int(k < 50)},{'1' if k < 5 else '-1' if k < 40 else '0'}"
            for k in range(150)]  # fmt: skip
    (tmp_path / "train.csv").write_text("path,a,b,c\n" + "\n".join(rows) + "\n")
    data = ImageFolderLTDataModule(train=str(tmp_path / "train.csv"), check_files=False)
    with caplog.at_level(logging.INFO):
        assert data.class_counts == [150, 50, 5]
    assert "head (> 100) 1 · medium (20–100) 1 · tail (< 20) 1 classes" in caplog.text
    assert "150 training images" in caplog.text


@pytest.mark.parametrize("decoder", ["pil", "dali"])
def test_batches_carry_float_targets_of_their_images_through_workers(csv_root, decoder):
    if decoder == "dali":
        pytest.importorskip("nvidia.dali", reason="the dali extra is in the dev extra")
    _, forms = csv_root
    data = ImageFolderLTDataModule(train=forms["wide"]["train"], test=forms["wide"]["test"],
                                   color_jitter=0.0, decoder=decoder,
                                   **(SMALL | {"num_workers": 2}))  # fmt: skip
    targets = expected_targets(TRAIN_SETS)
    seen = []
    for images, labels in data.train_dataloader():
        assert labels.dtype == torch.float32 and labels.shape == (len(images), 3)
        pixels = images * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(
            IMAGENET_MEAN
        ).view(3, 1, 1)
        for image, label in zip(pixels, labels, strict=True):
            index = read_code(np.clip(image.numpy() * 255, 0, 255))[1]
            assert torch.equal(label, targets[index])
            seen.append(index)
    assert sorted(seen) == list(range(len(TRAIN_SETS)))
    test_labels = torch.cat([labels for _, labels in data.test_dataloader()])
    assert torch.equal(test_labels, expected_targets(TEST_SETS))


def test_validation_is_carved_per_image_from_training_never_from_test(csv_root):
    _, forms = csv_root
    data = ImageFolderLTDataModule(train=forms["names"]["train"], test=forms["names"]["test"],
                                   val_fraction=0.25, seed=3, **SMALL)  # fmt: skip
    train, val, test = (data.splits[s] for s in ("train", "val", "test"))
    assert len(val) == round(0.25 * len(TRAIN_SETS)) and len(train) + len(val) == len(TRAIN_SETS)
    assert data.num_train_samples == len(train)  # the DB loss's N
    assert not set(train.paths) & set(val.paths)
    assert all(p.startswith("images/train_") for p in val.paths)
    assert not set(val.paths) & set(test.paths) and not data.validates_on_test
    again = ImageFolderLTDataModule(train=forms["names"]["train"], val_fraction=0.25, seed=3,
                                    **SMALL)  # fmt: skip
    assert again.splits["val"].paths == val.paths


@pytest.fixture
def no_positive_check(monkeypatch):
    """VOC / COCO fixtures hold a few classes; let the others be empty for the reader tests."""
    from ltlight.data.files import datamodule

    monkeypatch.setattr(datamodule, "check_positives", lambda *args: None)


def test_voc_mlt_reads_the_releases_id_list_and_xml_annotations(tmp_path, no_positive_check):
    data = VOCMLTDataModule(root=write_voc_mlt(str(tmp_path / "VOCdevkit")), **SMALL)
    train, test = data.splits["train"], data.splits["test"]
    # 2011_000999 is 20×20: the release drops training images below 32 pixels
    assert train.paths == [f"JPEGImages/{i}.jpg" for i in ("2008_000023", "2008_000028",
                                                          "2010_002361")]  # fmt: skip
    index = {name: i for i, name in enumerate(VOC_CLASSES)}
    expected = torch.zeros(3, 20)
    for row, names in enumerate([("person", "bottle"), ("car",), ("person", "dog")]):
        expected[row, [index[n] for n in names]] = 1  # difficult objects count, as released
    assert torch.equal(train.labels, expected)
    assert test.root.endswith("VOC2007") and len(test) == 3 and test.labels[2, index["car"]] == 1
    assert data.multi_label and data.num_classes == 20


def test_a_voc_class_without_positive_training_image_is_named(tmp_path):
    data = VOCMLTDataModule(root=write_voc_mlt(str(tmp_path / "VOCdevkit")), **SMALL)
    check_error(tmp_path, lambda: data.class_counts, ValueError,
                r"img_id\.txt: class 'aeroplane' \(0\) has no positive training image "
                r"\(16 class\(es\) without one\)")  # fmt: skip


def test_coco_mlt_reads_the_releases_id_list_and_instances_json(tmp_path, no_positive_check):
    data = COCOMLTDataModule(root=write_coco_mlt(str(tmp_path / "coco")), **SMALL)
    names = [n for _, n in sorted(COCO_CATEGORIES)]  # index = position in category-id order
    assert data.class_names == names == ["person", "car", "dog", "bottle", "toothbrush"]
    train = data.splits["train"]
    assert train.paths == [f"{i:012d}.jpg" for i in (554625, 118113, 281534, 384213, 272688)]
    expected = torch.tensor([
        [1, 0, 1, 0, 0],  # person, dog
        [0, 1, 0, 0, 0],  # car; the toothbrush box is 0.5 wide (w < 1)
        [1, 0, 0, 0, 0],  # the bottle box has area 0; crowd boxes count, as released
        [0, 0, 1, 0, 0],  # the toothbrush box is marked `ignore`
        [0, 0, 0, 0, 1],
    ], dtype=torch.float32)  # fmt: skip
    assert torch.equal(train.labels, expected)
    test = data.splits["test"]
    assert len(test) == 3 and test.labels[1].sum() == 0  # an image without boxes is kept
    assert data.class_counts == [2, 1, 2, 0, 1]


def test_chestxray14_reads_data_entry_and_the_official_lists_and_carves_by_patient(tmp_path):
    root = write_chestxray14(str(tmp_path / "cxr"))
    data = ChestXray14DataModule(root=root, **SMALL)
    train, test = data.splits["train"], data.splits["test"]
    assert train.paths == [n for n, _, p in CXR_ROWS if p not in CXR_TEST_PATIENTS]
    assert test.paths == [n for n, _, p in CXR_ROWS if p in CXR_TEST_PATIENTS]
    assert train.labels[2].sum() == 0  # No Finding: no class
    assert train.labels[4].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert data.class_counts[2] == 5 and data.class_counts[13] == 5  # Effusion, Hernia
    images, labels = next(iter(data.test_dataloader()))
    assert images.shape == (2, 3, 16, 16) and labels.shape == (2, 14)  # grey PNGs → RGB
    for seed in range(4):
        carved = ChestXray14DataModule(root=root, val_fraction=0.2, seed=seed, **SMALL)
        val, kept = carved.splits["val"], carved.splits["train"]
        assert len(val) >= round(0.2 * 11) and len(val) + len(kept) == 11
        assert not set(val.groups) & set(kept.groups)  # no patient on both sides
        patients = {p for _, _, p in CXR_ROWS if p not in CXR_TEST_PATIENTS}
        assert {int(g) for g in val.groups + kept.groups} == patients


# -- bad input, one line each naming the file and the line --------------------------------
def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("train", "test", "match"),
    [
        ("path,labels\na.jpg,cat|dog\n", "path,labels\nb.jpg,cat|emu\n",
         r"test\.csv:2: label 'emu' is not one of the 2 classes"),
        ("path,labels\na.jpg,0|1\nb.jpg,1\n", "path,labels\nc.jpg,2\n",
         r"test\.csv:2: label index 2 is outside the classes \[0, 2\)"),
        ("path,cat,dog\na.jpg,1,0\nb.jpg,0,1\n", "path,dog,cat\nc.jpg,1,0\n",
         r"test\.csv:1: the class columns \['dog', 'cat'\] differ from the training split's"),
        ("path,cat,dog\na.jpg,1,0\n,0,1\n", None, r"train\.csv:3: the row has no path"),
        ("path,labels\na.jpg,cat\nb.jpg,\n", "path,labels\nc.jpg,cat|\n",
         r"test\.csv:2: an empty label between '\|'"),
        ("path,cat,dog\na.jpg,1,0\nb.jpg,0,yes\n", None,
         r"train\.csv:3: value 'yes' in column 3 is not 1, 0, -1 or empty"),
        ("path,cat,dog\na.jpg,1,0\nb.jpg,1,-1\n", None,
         r"train\.csv: class 'dog' \(1\) has no positive training image"),
        ("path,labels\na.jpg,cat|dog\n", "path,label\nb.jpg,cat\n",
         r"test\.csv: the training split is multi-label, this split is not"),
    ],
)  # fmt: skip
def test_bad_multilabel_csv_is_named_by_file_and_line(tmp_path, train, test, match):
    data = ImageFolderLTDataModule(
        train=write(tmp_path, "train.csv", train),
        test=write(tmp_path, "test.csv", test) if test else None,
        check_files=False,
    )
    check_error(tmp_path, lambda: data.class_counts, ValueError, match)


def test_bad_release_files_are_named(tmp_path, no_positive_check):
    voc = write_voc_mlt(str(tmp_path / "VOCdevkit"))
    with open(os.path.join(voc, "longtail2012", "img_id.txt"), "a") as f:
        f.write("2012_424242\n")
    data = VOCMLTDataModule(root=voc, **SMALL)
    check_error(tmp_path, lambda: data.class_counts, FileNotFoundError,
                r"img_id\.txt:5: annotation .*2012_424242\.xml' does not exist")  # fmt: skip
    coco = write_coco_mlt(str(tmp_path / "coco"))
    write(tmp_path / "coco" / "longtail2017", "img_id.pkl", "554625\n77\n")
    data = COCOMLTDataModule(root=coco, **SMALL)
    check_error(tmp_path, lambda: data.class_counts, ValueError,
                r"img_id\.pkl:2: image id '77' is not in .*instances_train2017\.json")  # fmt: skip
    cxr = write_chestxray14(str(tmp_path / "cxr"))
    entry = os.path.join(cxr, "Data_Entry_2017.csv")
    with open(entry, "a") as f:
        f.write("00000009_000.png,Cardiomegaly|Pneumonitis,0,9,40,F,AP,1,1,0.1,0.1\n")
    data = ChestXray14DataModule(root=cxr, **SMALL)
    check_error(tmp_path, lambda: data.class_counts, ValueError,
                r"Data_Entry_2017\.csv:15: finding 'Pneumonitis' is not one of the 14")  # fmt: skip


def test_multilabel_refuses_the_single_label_carve_and_profile(csv_root):
    _, forms = csv_root
    for kwargs, match in ((dict(val_per_class=1), "carves its validation per image"),
                          (dict(imbalance_ratio=10), "imbalance_ratio must be None")):  # fmt: skip
        data = ImageFolderLTDataModule(train=forms["names"]["train"], **SMALL, **kwargs)
        with pytest.raises(ValueError, match=match):
            _ = data.class_counts


def test_a_multilabel_folder_trains_with_db_loss_and_class_aware_sampling(csv_root, tmp_path):
    import warnings

    import lightning as L
    from torch import nn

    from ltlight import LongTailModule
    from ltlight.losses import DistributionBalancedLoss

    _, forms = csv_root
    data = ImageFolderLTDataModule(train=forms["names"]["train"], test=forms["names"]["test"],
                                   sampling="class_aware", **SMALL)  # fmt: skip
    backbone = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 3))
    module = LongTailModule(backbone, loss=DistributionBalancedLoss())
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, enable_checkpointing=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=data)
    assert trainer.state.finished and module.multi_label
    assert module.loss.class_counts.tolist() == [9, 5, 2] and module.loss.num_samples == 12
    assert trainer.train_dataloader.sampler.sampling == "class_aware"
    assert "val/map" in trainer.callback_metrics  # validated on the test split (no carve)
