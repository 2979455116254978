"""Bad image files and lists: each a one-line error naming the file (or line), nothing written."""

import os

import pytest
from fake_datasets import write_image_folder, write_jpeg

from ltlight.cli import USER_ERRORS
from ltlight.data import ImageFolderLTDataModule
from ltlight.data.files.dataset import BadImageError
from ltlight.data.files.image_list import read_coco_json, read_split_file


def files_under(path):
    return sorted(
        os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs
    )


def check_error(tmp_path, make, error, match):
    """``make()`` raises ``error`` matching ``match``, one line, and writes nothing."""
    before = files_under(tmp_path)
    with pytest.raises(error, match=match) as info:
        make()
    assert "\n" not in str(info.value)
    assert issubclass(info.type, USER_ERRORS) or info.type is BadImageError
    assert files_under(tmp_path) == before


def folder_data(tmp_path, **kwargs):
    return ImageFolderLTDataModule(train=str(tmp_path / "train"), num_workers=0, **kwargs)


@pytest.fixture
def train_folder(tmp_path):
    return write_image_folder(str(tmp_path / "train"), {"a": 4, "b": 2})


def test_a_missing_image_is_named_or_skipped_with_a_warning(tmp_path, train_folder):
    (tmp_path / "train.csv").write_text(
        "path,label\na/a_0000.jpg,a\nb/gone.jpg,b\nb/b_0000.jpg,b\n"
    )
    data = ImageFolderLTDataModule(train=str(tmp_path / "train.csv"), root=train_folder)
    check_error(
        tmp_path, lambda: data.class_counts, FileNotFoundError, r"train\.csv:3 .*b/gone\.jpg"
    )
    skipping = ImageFolderLTDataModule(
        train=str(tmp_path / "train.csv"), root=train_folder, skip_bad_images=True
    )
    with pytest.warns(UserWarning, match=r"skipping 1 missing image.*gone\.jpg"):
        assert skipping.class_counts == [1, 1]


def test_a_corrupt_image_is_named_when_loaded_or_skipped_and_counted(tmp_path, train_folder):
    (tmp_path / "train" / "a" / "a_0001.jpg").write_bytes(b"not a jpeg at all")
    loader = folder_data(tmp_path, batch_size=8, image_size=16, resize=20).train_dataloader()
    check_error(
        tmp_path, lambda: list(loader), BadImageError, r"a_0001\.jpg: image does not decode"
    )
    skipping = folder_data(tmp_path, batch_size=8, image_size=16, resize=20, skip_bad_images=True)
    loader = skipping.train_dataloader()
    with pytest.warns(UserWarning, match=r"skipped 1 image.*a_0001\.jpg"):
        ((images, labels),) = list(loader)
    assert len(images) == len(labels) == 5 and loader.skipped == [
        str(tmp_path / "train/a/a_0001.jpg")
    ]


def test_an_unparsable_split_line_is_named(tmp_path):
    (tmp_path / "split.txt").write_text("train/a/1.jpg 0\n\ntrain/a/2.jpg zero\n")
    check_error(
        tmp_path,
        lambda: read_split_file(str(tmp_path / "split.txt"), str(tmp_path)),
        ValueError,
        r"split\.txt:3: expected 'relative/path label', got 'train/a/2\.jpg zero'",
    )


def test_a_label_outside_the_classes_is_named(tmp_path, train_folder):
    (tmp_path / "train.csv").write_text("path,label\na/a_0000.jpg,0\nb/b_0000.jpg,2\n")
    data = ImageFolderLTDataModule(
        train=str(tmp_path / "train.csv"), root=train_folder, class_names=["a", "b"]
    )
    check_error(
        tmp_path,
        lambda: data.class_counts,
        ValueError,
        r"train\.csv:3: label 2 .* outside .*\[0, 2\)",
    )


def test_a_class_without_training_image_is_named(tmp_path, train_folder):
    (tmp_path / "train.csv").write_text("path,label\na/a_0000.jpg,a\na/a_0001.jpg,a\n")
    data = ImageFolderLTDataModule(
        train=str(tmp_path / "train.csv"), root=train_folder, class_names=["a", "b", "c"]
    )
    check_error(
        tmp_path, lambda: data.class_counts, ValueError, r"class 'b' \(1\) has no training image"
    )
    os.makedirs(tmp_path / "train" / "empty")
    check_error(
        tmp_path,
        lambda: folder_data(tmp_path).class_counts,
        ValueError,
        r"class 'empty' \(2\) has no training image",
    )


def test_a_csv_without_the_columns_is_named(tmp_path, train_folder):
    (tmp_path / "train.csv").write_text("file,class\na/a_0000.jpg,a\n")
    data = ImageFolderLTDataModule(train=str(tmp_path / "train.csv"), root=train_folder)
    check_error(
        tmp_path,
        lambda: data.class_counts,
        ValueError,
        r"train\.csv:1: the header must name the columns 'path' and 'label', "
        r"got \['file', 'class'\]",
    )


def test_an_empty_folder_is_named(tmp_path):
    os.makedirs(tmp_path / "train")
    check_error(
        tmp_path, lambda: folder_data(tmp_path).class_counts, ValueError, "no class folders"
    )
    os.makedirs(tmp_path / "train" / "a")
    (tmp_path / "train" / "a" / "notes.txt").write_text("no images here")
    check_error(tmp_path, lambda: folder_data(tmp_path).class_counts, ValueError, "no images in")
    check_error(
        tmp_path,
        lambda: ImageFolderLTDataModule(train=str(tmp_path / "absent")).class_counts,
        FileNotFoundError,
        "absent' does not exist",
    )


@pytest.mark.parametrize("path", ["../outside.jpg", "a/../../outside.jpg"])
def test_paths_escaping_the_root_are_refused(tmp_path, train_folder, path):
    write_jpeg(str(tmp_path / "outside.jpg"), (0, 0, 0))
    (tmp_path / "train.csv").write_text(f"path,label\na/a_0000.jpg,a\n{path},b\n")
    data = ImageFolderLTDataModule(train=str(tmp_path / "train.csv"), root=train_folder)
    check_error(
        tmp_path,
        lambda: data.class_counts,
        ValueError,
        r"train\.csv:3: path .* not inside the image root",
    )
    (tmp_path / "split.txt").write_text(f"{path} 0\n")
    check_error(
        tmp_path,
        lambda: read_split_file(str(tmp_path / "split.txt"), train_folder),
        ValueError,
        "split.txt:1: path",
    )


def test_the_same_file_in_train_and_test_is_a_warning(tmp_path, train_folder):
    os.makedirs(tmp_path / "test" / "b")
    os.link(tmp_path / "train/b/b_0000.jpg", tmp_path / "test/b/link.jpg")  # a hard link
    data = ImageFolderLTDataModule(train=train_folder, test=str(tmp_path / "test"))
    with pytest.warns(
        UserWarning, match=r"1 test image\(s\) are also training images: .*link\.jpg"
    ):
        assert data.class_counts == [4, 2]
    (tmp_path / "test.csv").write_text("path,label\ntrain/a/a_0001.jpg,a\ntest/b/link.jpg,b\n")
    data = ImageFolderLTDataModule(train=train_folder, test=str(tmp_path / "test.csv"))
    with pytest.warns(UserWarning, match=r"2 test image\(s\) are also training images"):
        assert data.class_counts == [4, 2]


def test_malformed_coco_json_is_named(tmp_path):
    (tmp_path / "a.json").write_text('{"images": [], "categories": []')
    check_error(
        tmp_path,
        lambda: read_coco_json(str(tmp_path / "a.json"), str(tmp_path)),
        ValueError,
        r"a\.json:1: not valid JSON",
    )
    (tmp_path / "b.json").write_text(
        '{"images": [{"id": 1, "file_name": "x.jpg"}], "categories": [{"id": 0, "name": "c"}],'
        ' "annotations": [{"image_id": 1, "category_id": 5}]}'
    )
    check_error(
        tmp_path,
        lambda: read_coco_json(str(tmp_path / "b.json"), str(tmp_path)),
        ValueError,
        r"b\.json: annotations\[0\]: category_id 5 is not in 'categories'",
    )


def test_bad_arguments_name_themselves():
    for argument, value in (("batch_size", 0), ("num_workers", -1), ("val_per_class", -2)):
        with pytest.raises(ValueError, match=f"{argument} must be an integer >= "):
            ImageFolderLTDataModule(train="x", **{argument: value})
    with pytest.raises(ValueError, match="color_jitter must be >= 0"):
        ImageFolderLTDataModule(train="x", color_jitter=-0.1)
    with pytest.raises(ValueError, match=r"resize \(200\) must be >= image_size \(224\)"):
        ImageFolderLTDataModule(train="x", image_size=224, resize=200)
