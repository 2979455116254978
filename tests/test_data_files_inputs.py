"""File inputs read as they are: hidden folders, symbolic links, CSV quirks, image modes.

Each test builds a tiny folder or CSV with the quirk and checks what the readers make of it:
the images a user meant, each once, or a one-line error naming the file (or line) at fault.
"""

import os
import warnings

import pytest
from fake_datasets import write_image_folder, write_jpeg

from ltlight.data import ImageFolderLTDataModule
from ltlight.data.files.image_list import read_csv, scan_image_folder


def one_line_error(make, error, match):
    with pytest.raises(error, match=match) as info:
        make()
    assert "\n" not in str(info.value)
    return info.value


@pytest.fixture
def train_folder(tmp_path):
    return write_image_folder(str(tmp_path / "train"), {"a": 4, "b": 2})


# -- folders: hidden names, symbolic links -----------------------------------------------------
def test_hidden_folders_and_files_are_not_images(train_folder):
    write_jpeg(
        os.path.join(train_folder, "a", ".ipynb_checkpoints", "a_0000-checkpoint.jpg"), (1, 2, 3)
    )
    write_jpeg(os.path.join(train_folder, "b", ".git", "objects", "x.jpg"), (1, 2, 3))
    write_jpeg(os.path.join(train_folder, "b", "._b_0000.jpg"), (1, 2, 3))
    write_jpeg(os.path.join(train_folder, ".thumbnails", "t.jpg"), (1, 2, 3))
    images, names = scan_image_folder(train_folder)
    assert names == ["a", "b"]
    assert images.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert all(not part.startswith(".") for path in images.paths for part in path.split(os.sep))


def test_a_symlinked_folder_outside_the_root_is_refused(tmp_path, train_folder):
    elsewhere = write_image_folder(str(tmp_path / "elsewhere"), {"c": 3})
    os.symlink(os.path.join(elsewhere, "c"), os.path.join(train_folder, "c"))
    one_line_error(
        lambda: scan_image_folder(train_folder),
        ValueError,
        r"train/c: a symbolic link to .*elsewhere/c, outside the image folder",
    )
    os.remove(os.path.join(train_folder, "c"))
    os.symlink(os.path.join(elsewhere, "c", "c_0000.jpg"), os.path.join(train_folder, "b", "x.jpg"))
    one_line_error(
        lambda: scan_image_folder(train_folder), ValueError, r"b/x\.jpg: a symbolic link to"
    )


def test_a_symlink_loop_ends_and_an_image_reached_twice_counts_once(train_folder):
    os.symlink(os.path.join(train_folder, "a"), os.path.join(train_folder, "a", "loop"))
    os.symlink("../a", os.path.join(train_folder, "b", "also_a"))  # a's images from class b
    os.symlink("b_0000.jpg", os.path.join(train_folder, "b", "b_copy.jpg"))
    with pytest.warns(UserWarning, match=r"1 image\(s\) reached a second time .* counted once"):
        images, _ = scan_image_folder(train_folder)
    assert images.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert len({os.path.realpath(images.full_path(i)) for i in range(len(images))}) == 6


def test_a_plain_folder_scans_without_a_warning(train_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = ImageFolderLTDataModule(train=train_folder, num_workers=0)
        assert data.class_counts == [4, 2]


# -- CSV files ---------------------------------------------------------------------------------
def test_a_csv_with_a_utf8_byte_order_mark_reads_its_path_column(tmp_path, train_folder):
    text = "path,label\na/a_0000.jpg,a\nb/b_0000.jpg,b\n"
    (tmp_path / "train.csv").write_bytes(text.encode("utf-8-sig"))
    images, names = read_csv(str(tmp_path / "train.csv"), root=train_folder)
    assert names == ["a", "b"] and images.paths == ["a/a_0000.jpg", "b/b_0000.jpg"]


def test_a_csv_mixing_class_names_and_indices_names_the_line(tmp_path, train_folder):
    (tmp_path / "train.csv").write_text(
        "path,label\na/a_0000.jpg,a\na/a_0001.jpg,a\nb/b_0000.jpg,1\n"
    )
    one_line_error(
        lambda: read_csv(str(tmp_path / "train.csv"), root=train_folder),
        ValueError,
        r"train\.csv:4: label '1' is a class index, but .*train\.csv:2 gives the class name 'a'",
    )


def test_a_label_index_beyond_the_classes_names_the_line(tmp_path, train_folder):
    rows = "".join(f"a/a_000{i}.jpg,{i % 2}\n" for i in range(4)) + "b/b_0000.jpg,10\n"
    (tmp_path / "train.csv").write_text("path,label\n" + rows)
    data = ImageFolderLTDataModule(
        train=str(tmp_path / "train.csv"), root=train_folder, val_per_class=1
    )
    one_line_error(
        lambda: data.class_counts,
        ValueError,
        r"train\.csv:6: label 10 makes 11 classes, but no row has class 2",
    )
