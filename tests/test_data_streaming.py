"""LitData: a converted file dataset streams back the very same batches, class counts and names."""

import json
import os
from pathlib import Path

import pytest
import torch

from ltlight.data import ImageFolderLTDataModule, StreamingLTDataModule
from ltlight.data.files.streaming import METADATA, convert, main

pytest.importorskip("litdata")
ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(batch_size=8, num_workers=0, image_size=16, resize=20, seed=4)


@pytest.fixture(scope="module")
def converted(image_folder_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("litdata") / "folder"
    source = ImageFolderLTDataModule(
        train=f"{image_folder_dir}/train", test=f"{image_folder_dir}/test", val_per_class=1,
        **SMALL,
    )  # fmt: skip
    convert(source, str(out))
    return source, out


def test_conversion_stores_class_names_counts_and_labels(converted):
    source, out = converted
    metadata = json.loads((out / METADATA).read_text())
    assert metadata["class_names"] == source.class_names
    assert metadata["class_counts"] == source.class_counts == [7, 5, 4, 3, 3, 2, 2, 2, 2, 2]
    assert sorted(metadata["labels"]) == ["test", "train", "val"]
    assert len(metadata["labels"]["val"]) == 10 and len(metadata["labels"]["test"]) == 20
    assert os.path.isfile(out / "train" / "index.json")  # LitData's own format


def test_streamed_batches_equal_the_file_batches(converted, tmp_path):
    source, out = converted
    streamed = StreamingLTDataModule(str(out), cache_dir=str(tmp_path / "cache"), **SMALL)
    assert streamed.class_names == source.class_names
    assert streamed.class_counts == source.class_counts and streamed.num_classes == 10
    for split in ("val", "test"):  # the same images (a stored order may differ with workers)
        labels = streamed.splits[split].labels
        assert torch.equal(labels.sort().values, source.splits[split].labels.sort().values)
    # One conversion process keeps the order: the streamed epochs are the file epochs, the
    # class-balanced ones (DRS) included, image for image.
    a, b = source.train_dataloader(), streamed.train_dataloader()
    a.class_balanced = b.class_balanced = True
    a.sampler.set_epoch(1), b.sampler.set_epoch(1)
    assert len(a) == len(b) == 4  # 32 training images, batch 8
    for (x, y), (u, v) in zip(a, b, strict=True):
        assert torch.equal(y, v) and torch.equal(x, u)


def test_convert_refuses_to_overwrite_and_the_command_line_converts(image_folder_dir, tmp_path):
    args = [
        "--data", str(ROOT / "configs" / "folder" / "dataset.yaml"), "--data.init_args.test=null",
        "--data.init_args.val_per_class=0",
        f"--data.init_args.train={image_folder_dir}/train", "--data.init_args.num_workers=0",
        f"--output_dir={tmp_path / 'out'}",
    ]  # fmt: skip
    main(args)
    metadata = json.loads((tmp_path / "out" / METADATA).read_text())
    assert metadata["class_counts"][0] == 8 and sorted(metadata["labels"]) == ["train"]
    with pytest.raises(FileExistsError, match="already holds a converted dataset"):
        main(args)
    with pytest.raises(FileNotFoundError, match="convert a dataset first"):
        _ = StreamingLTDataModule(str(tmp_path / "absent")).class_counts


def test_streamed_predictions_name_each_image_by_its_path(converted, tmp_path):
    source, out = converted
    streamed = StreamingLTDataModule(str(out), cache_dir=str(tmp_path / "cache"), **SMALL)
    # one conversion process keeps the order: the same files, the same labels, in order
    assert streamed.predict_files == source.predict_files
    assert streamed.predict_files[0] == "class_0/class_0_0000.jpg"
    assert streamed.splits["test"].labels.tolist() == source.splits["test"].labels.tolist()
    # new images beside a streamed dataset are read from their files
    new = StreamingLTDataModule(
        str(out), cache_dir=str(tmp_path / "cache"), predict=str(source.test_source), **SMALL
    )
    labels = [label for _, batch in new.predict_dataloader() for label in batch.tolist()]
    assert new.predict_files == source.predict_files and labels == [-1] * 20


def test_a_stream_decodes_with_dali_as_the_files_do(converted, image_folder_dir, tmp_path):
    pytest.importorskip("nvidia.dali", reason="the dali extra is in the dev extra")
    _, out = converted
    files = ImageFolderLTDataModule(
        train=f"{image_folder_dir}/train", test=f"{image_folder_dir}/test", val_per_class=1,
        decoder="dali", **SMALL,
    )  # fmt: skip
    streamed = StreamingLTDataModule(
        str(out), cache_dir=str(tmp_path / "cache"), decoder="dali", **SMALL
    )
    a, b = files.train_dataloader(), streamed.train_dataloader()
    a.sampler.set_epoch(2), b.sampler.set_epoch(2)
    for (x, y), (u, v) in zip(a, b, strict=True):
        assert torch.equal(y, v) and torch.equal(x, u)
