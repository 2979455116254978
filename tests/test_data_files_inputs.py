"""File inputs read as they are: hidden folders, symbolic links, CSV quirks, image modes.

Each test builds a tiny folder or CSV with the quirk and checks what the readers make of it:
the images a user meant, each once, or a one-line error naming the file (or line) at fault.
"""

import os
import warnings

import numpy as np
import pytest
import torch
from fake_datasets import write_image_folder, write_jpeg
from PIL import Image

from ltlight.cli import USER_ERRORS
from ltlight.data import ImageFolderLTDataModule
from ltlight.data.files.dataset import BadImageError, ImageFileDataset
from ltlight.data.files.image_list import ImageList, read_csv, scan_image_folder
from ltlight.data.files.image_modes import to_rgb
from ltlight.data.files.loader import FileDataLoader


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


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (  # class names mixed with class indices
            ["a/a_0000.jpg,a", "a/a_0001.jpg,a", "b/b_0000.jpg,1"],
            r"train\.csv:4: label '1' is a class index, but .*train\.csv:2 gives the class name",
        ),
        (  # one image with two labels
            ["a/a_0000.jpg,a", "b/b_0000.jpg,b", "a/a_0000.jpg,b"],
            r"train\.csv:4: 'a/a_0000\.jpg' is listed again with label 1, but .*train\.csv:2 gives",
        ),
    ],
)
def test_a_csv_error_names_the_lines(tmp_path, train_folder, rows, match):
    (tmp_path / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    one_line_error(
        lambda: read_csv(str(tmp_path / "train.csv"), root=train_folder), ValueError, match
    )


@pytest.mark.parametrize(
    ("stray", "match"),
    [  # labels 0, 1 and one stray index: a gap, or a tiny class the validation carve refuses
        (10, r"train\.csv:6: label 10 makes 11 classes, but no row has class 2"),
        (2, r"class '2' \(2\): it has 1 images.*; its images are listed at .*train\.csv:6$"),
    ],
)
def test_a_stray_label_index_names_its_line(tmp_path, train_folder, stray, match):
    rows = "".join(f"a/a_000{i}.jpg,{i % 2}\n" for i in range(4)) + f"b/b_0000.jpg,{stray}\n"
    (tmp_path / "train.csv").write_text("path,label\n" + rows)
    data = ImageFolderLTDataModule(
        train=str(tmp_path / "train.csv"), root=train_folder, val_per_class=1
    )
    one_line_error(lambda: data.class_counts, ValueError, match)


# -- image modes: every file as the 8-bit RGB a network sees ------------------------------------
def decoded(tmp_path, name):
    """The evaluation crop (uint8 (3, 8, 8)) of ``tmp_path/name``, decoded as the loader does."""
    images = ImageList(str(tmp_path), [name], torch.zeros(1, dtype=torch.int64), str(tmp_path))
    crop, _, _ = ImageFileDataset(images, train=False, size=8, resize=8)[0]
    return crop


def test_a_16_bit_png_is_scaled_by_its_range_not_saturated(tmp_path):
    Image.fromarray(np.full((12, 10), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    assert decoded(tmp_path, "deep.png").unique().tolist() == [40000 >> 8]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.25, 1.0], [0, 64, 255]),  # [0, 1]: × 255
        ([0.0, 100.0, 200.0], [0, 100, 200]),  # [0, 255]: kept
        ([-3.0, 1.0, 5.0], [0, 128, 255]),  # any other range: minimum → 0, maximum → 255
    ],
)
def test_a_float_tiff_is_scaled_by_its_value_range(tmp_path, values, expected):
    Image.fromarray(np.array([values], dtype=np.float32)).save(tmp_path / "float.tif")
    image = Image.open(tmp_path / "float.tif")
    assert image.mode == "F"
    assert [to_rgb(image).getpixel((x, 0)) for x in range(3)] == [(v, v, v) for v in expected]


def test_a_float_tiff_decodes_to_its_values_not_zeros(tmp_path):
    Image.fromarray(np.full((12, 10), 0.25, dtype=np.float32)).save(tmp_path / "float.tif")
    assert decoded(tmp_path, "float.tif").unique().tolist() == [64]


def test_a_float_tiff_without_a_finite_range_is_refused_naming_the_file(tmp_path):
    pixels = np.full((12, 10), 0.5, dtype=np.float32)
    pixels[3, 3] = np.nan
    Image.fromarray(pixels).save(tmp_path / "nan.tif")
    one_line_error(
        lambda: decoded(tmp_path, "nan.tif"),
        BadImageError,
        r"nan\.tif: image does not decode \(a float image with NaN or infinite values",
    )


def transparent_images():
    """Fully transparent red, greyscale, palette images: only the background may show."""
    rgba = Image.new("RGBA", (10, 12), (255, 0, 0, 0))
    grey = Image.new("LA", (10, 12), (0, 0))
    palette = Image.new("P", (10, 12), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 1
    return {"rgba.png": rgba, "grey.png": grey, "palette.png": palette, "palette.gif": palette}


@pytest.mark.parametrize("name", list(transparent_images()))
def test_transparent_pixels_are_composited_on_white(tmp_path, name):
    image = transparent_images()[name]
    image.save(tmp_path / name, transparency=1) if image.mode == "P" else image.save(
        tmp_path / name
    )
    assert decoded(tmp_path, name).unique().tolist() == [255]  # image_modes.BACKGROUND


def test_half_transparent_black_on_white_is_mid_grey(tmp_path):
    Image.new("RGBA", (10, 12), (0, 0, 0, 128)).save(tmp_path / "half.png")
    assert abs(int(decoded(tmp_path, "half.png")[0, 4, 4]) - round(255 * (1 - 128 / 255))) <= 1


def test_a_gif_is_scanned_and_its_first_frame_read(tmp_path):
    first, second = Image.new("P", (10, 12), 1), Image.new("P", (10, 12), 2)
    for frame in (first, second):
        frame.putpalette([0, 0, 0, 10, 200, 30, 250, 5, 5] + [0] * 759)
    os.makedirs(tmp_path / "train" / "a")
    first.save(tmp_path / "train/a/moving.gif", save_all=True, append_images=[second])
    write_jpeg(str(tmp_path / "train/b/b.jpg"), (0, 0, 0))
    images, _ = scan_image_folder(str(tmp_path / "train"))
    assert images.paths == ["a/moving.gif", "b/b.jpg"]
    crop = decoded(tmp_path / "train", "a/moving.gif")
    assert crop[:, 4, 4].tolist() == [10, 200, 30]


# -- a bad image: one line naming the file, also from a worker process -------------------------
def test_a_bad_image_read_by_a_worker_is_one_line_naming_the_file(train_folder):
    bad = os.path.join(train_folder, "b", "b_0001.jpg")
    with open(bad, "wb") as file:
        file.write(b"\xff\xd8 not a JPEG after all")
    data = ImageFolderLTDataModule(
        train=train_folder, num_workers=1, batch_size=2, image_size=8, resize=8
    )
    error = one_line_error(
        lambda: list(data.train_dataloader()),
        BadImageError,
        rf"^{bad}: image does not decode \(.*\); pass skip_bad_images=True to skip$",
    )
    assert isinstance(error, USER_ERRORS)  # `ltlight` prints it as one line, no traceback


# -- repeated rows: each image counts once, validation never shares a file with training ------
def test_repeated_csv_rows_count_once_and_never_cross_into_validation(tmp_path, train_folder):
    rows = ["a/a_0000.jpg,a"] * 3 + ["a/a_0001.jpg,a", "a/a_0002.jpg,a", "a/a_0003.jpg,a"]
    rows += ["b/b_0000.jpg,b", "./b/b_0000.jpg,b", "b/b_0001.jpg,b"]
    (tmp_path / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    for seed in range(4):
        data = ImageFolderLTDataModule(
            train=str(tmp_path / "train.csv"), root=train_folder, val_per_class=1, seed=seed
        )
        with pytest.warns(
            UserWarning, match=r"train\.csv: 3 repeated row\(s\) .*train\.csv:3 'a/a_0000"
        ):
            counts = data.class_counts
        assert counts == [3, 1]  # 4 and 2 distinct images, one of each carved
        train, val = data.splits["train"], data.splits["val"]
        assert not set(train.paths) & set(val.paths)


def test_the_dali_decoder_reads_every_image_mode_as_pillow_does(tmp_path):
    pytest.importorskip("nvidia.dali", reason="the dali extra is in the dev extra")
    Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    write_jpeg(str(tmp_path / "photo.jpg"), (10, 20, 30), size=(40, 30))
    paths = ["clear.png", "deep.png", "photo.jpg"]
    images = ImageList(str(tmp_path), paths, torch.zeros(3, dtype=torch.int64), str(tmp_path))

    def batch(decoder):
        dataset = ImageFileDataset(images, train=False, size=8, resize=8)
        loader = FileDataLoader(dataset, 4, mean=(0, 0, 0), std=(1 / 255,) * 3, decoder=decoder)
        ((pixels, _),) = list(loader)
        return pixels

    dali = batch("dali")
    assert torch.equal(dali, batch("pil"))
    assert dali[0].unique().tolist() == [255.0]  # transparent: the white background
