"""Image files: decoding and crops against torchvision, the batch colour jitter, the file loader
(order, seeds, class-balanced mode, DDP shards, resume, workers) and ImageFolderLTDataModule."""

import math
import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF
from fake_datasets import code_colour, read_code, write_image_folder, write_jpeg
from PIL import Image

from ltlight.data import FileDataLoader, ImageFolderLTDataModule
from ltlight.data.files.color_jitter import color_jitter, color_jitter_with
from ltlight.data.files.dataset import (
    ImageFileDataset,
    center_crop_box,
    random_resized_crop_box,
)
from ltlight.data.files.image_list import ImageList
from ltlight.data.sampling import EpochSampler

COUNTS = {"ant": 12, "bee": 6, "cat": 3}  # 21 images, classes 0, 1, 2
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(str(tmp_path_factory.mktemp("folder") / "train"), COUNTS)


def gradient_jpeg(path, size=(120, 90)):
    x = np.arange(size[0])[None, :, None]
    y = np.arange(size[1])[:, None, None]
    pixels = np.concatenate([2 * x + 0 * y, 0 * x + 2 * y, x + y], axis=2) % 256
    Image.fromarray(pixels.astype(np.uint8)).save(path, "JPEG", quality=95)
    return path


def image_list(root, counts=COUNTS):
    data = ImageFolderLTDataModule(train=root, num_workers=0)
    return data.splits["train"]


def make_loader(root, train=True, jitter=0.0, **kwargs):
    dataset = ImageFileDataset(image_list(root), train=train, size=16, resize=20)
    options = dict(batch_size=4, mean=MEAN, std=STD, shuffle=True, color_jitter=jitter)
    return FileDataLoader(dataset, **(options | kwargs))


def codes(images):
    """(label, index) of every image of a normalised batch."""
    pixels = images * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    pixels = (pixels * 255).numpy()
    return [read_code(p) for p in pixels]


# -- per-image geometry against torchvision --------------------------------------------------
@pytest.mark.parametrize("shape", [(375, 500), (500, 375), (40, 400), (224, 224)])
def test_random_resized_crop_box_is_torchvisions_get_params_with_a_generator(shape):
    height, width = shape
    for seed in range(20):
        torch.manual_seed(seed)
        expected = T.RandomResizedCrop.get_params(
            torch.empty(3, height, width), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
        )
        ours = random_resized_crop_box(height, width, torch.Generator().manual_seed(seed))
        assert ours == tuple(expected)


def test_evaluation_crop_matches_resize_256_then_center_crop_224(tmp_path):
    path = gradient_jpeg(str(tmp_path / "g.jpg"), size=(500, 375))
    image = Image.open(path).convert("RGB")
    reference = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])(image).float()
    item = ImageList(str(tmp_path), ["g.jpg"], torch.tensor([0]), "test")
    ours, label, _ = ImageFileDataset(item, train=False)[0]
    assert ours.shape == (3, 224, 224) and ours.dtype == torch.uint8 and label == 0
    # one resample of the same box instead of two: equal up to interpolation rounding
    difference = (ours.float() - reference).abs()
    assert difference.mean() < 3.0 and difference.median() <= 2.0  # of 255
    assert center_crop_box(375, 500, 256, 224) == (23, 86, 328, 328)  # 224 · 375/256 = 328


def test_training_crop_is_a_function_of_the_sample_seed_and_matches_the_box(tmp_path):
    path = gradient_jpeg(str(tmp_path / "g.jpg"), size=(500, 375))
    item = ImageList(str(tmp_path), ["g.jpg"], torch.tensor([0]), "test")
    dataset = ImageFileDataset(item, train=True, draft=False)
    first, again, other = dataset[(0, 7)][0], dataset[(0, 7)][0], dataset[(0, 8)][0]
    assert torch.equal(first, again) and not torch.equal(first, other)
    generator = torch.Generator().manual_seed(7)
    top, left, h, w = random_resized_crop_box(375, 500, generator)
    flip = torch.rand(1, generator=generator).item() < 0.5
    full = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    expected = TF.resized_crop(full, top, left, h, w, [224, 224], antialias=True)
    assert torch.equal(first, expected.flip(-1) if flip else expected)


def test_reduced_size_decoding_of_a_large_crop_stays_close_to_the_full_decode(tmp_path):
    gradient_jpeg(str(tmp_path / "big.jpg"), size=(1600, 1200))
    item = ImageList(str(tmp_path), ["big.jpg"], torch.tensor([0]), "test")
    full = ImageFileDataset(item, train=False, draft=False)[0][0].float()
    reduced = ImageFileDataset(item, train=False, draft=True)[0][0].float()
    assert (full - reduced).abs().mean() < 3.0


# -- the batch colour jitter against torchvision ---------------------------------------------
def jitter_case(low, high, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(6, 3, 8, 8, generator=generator, dtype=torch.float64) * (high - low) + low
    factors = torch.rand(6, 3, generator=generator, dtype=torch.float64) * 0.8 + 0.6
    order = torch.stack([torch.randperm(3, generator=generator) for _ in range(6)])
    return images, factors, order


ADJUST = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation]


def test_color_jitter_equals_torchvisions_adjustments_per_image_in_its_order():
    # Mid-range colours and factors in [0.6, 1.4]: no operation leaves [0, 1], so torchvision's
    # clamps after each operation change nothing and the fused map must agree exactly.
    images, factors, order = jitter_case(0.3, 0.6)
    ours = color_jitter_with(images, factors, order, maximum=1.0)
    for b in range(6):
        expected = images[b]
        for operation in order[b].tolist():
            expected = ADJUST[operation](expected, float(factors[b, operation]))
        torch.testing.assert_close(ours[b].double(), expected, rtol=0, atol=1e-6)


def test_color_jitter_clamps_once_at_the_end():
    images, factors, order = jitter_case(0.0, 1.0, seed=1)
    ours = color_jitter_with(images * 255, factors, order)
    grey = torch.tensor([0.2989, 0.587, 0.114], dtype=torch.float64).view(3, 1, 1)
    for b in range(6):
        x = images[b] * 255
        for operation in order[b].tolist():
            f = float(factors[b, operation])
            if operation == 0:
                x = f * x
            elif operation == 1:
                x = f * x + (1 - f) * (x * grey).sum(0).mean()
            else:
                x = f * x + (1 - f) * (x * grey).sum(0, keepdim=True)
        torch.testing.assert_close(ours[b].double(), x.clamp(0, 255), rtol=0, atol=1e-3)


def test_color_jitter_draws_factors_in_range_and_is_a_function_of_the_seed():
    images = torch.full((64, 3, 4, 4), 100, dtype=torch.uint8)
    a = color_jitter(images, 0.4, torch.Generator().manual_seed(1))
    b = color_jitter(images, 0.4, torch.Generator().manual_seed(1))
    c = color_jitter(images, 0.4, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # a grey image only changes by brightness: factor in [0.6, 1.4]
    ratio = a[:, 0, 0, 0] / 100
    assert ratio.min() >= 0.6 - 1e-6 and ratio.max() <= 1.4 + 1e-6 and ratio.std() > 0.1
    assert torch.equal(color_jitter(images, 0.0, torch.Generator()), images.float())


# -- the loader -------------------------------------------------------------------------------
def test_batches_are_normalised_float_and_every_image_keeps_its_label(folder):
    data_loader = make_loader(folder)
    seen = []
    for images, labels in data_loader:
        assert images.dtype == torch.float32 and images.shape[1:] == (3, 16, 16)
        decoded = codes(images)
        assert [label for label, _ in decoded] == labels.tolist()
        seen += [index for _, index in decoded]
    assert len(data_loader) == 6 and sorted(seen) == list(range(21))  # each image once


def test_order_is_the_epoch_samplers_and_changes_with_the_epoch(folder):
    data_loader = make_loader(folder, seed=3)
    for epoch in (0, 1):
        data_loader.sampler.set_epoch(epoch)
        labels = torch.cat([labels for _, labels in data_loader])
        order = EpochSampler(data_loader.dataset.labels, shuffle=True, seed=3).indices(epoch)
        assert torch.equal(labels, data_loader.dataset.labels[order])
    unshuffled = make_loader(folder, train=False, shuffle=False)
    assert [i for images, _ in unshuffled for _, i in codes(images)] == list(range(21))


def batches(data_loader, epoch):
    data_loader.sampler.set_epoch(epoch)
    return [(images.clone(), labels.clone()) for images, labels in data_loader]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (x, y), (u, v) in zip(a, b, strict=True):
        assert torch.equal(x, u) and torch.equal(y, v)


def test_worker_processes_give_exactly_the_batches_of_the_main_process(folder):
    in_process = batches(make_loader(folder, jitter=0.4, num_workers=0, seed=5), 2)
    with_workers = make_loader(folder, jitter=0.4, num_workers=2, seed=5)
    assert_same_batches(in_process, batches(with_workers, 2))
    assert_same_batches(
        batches(with_workers, 3), batches(make_loader(folder, seed=5, jitter=0.4), 3)
    )


def test_class_balanced_epochs_follow_the_epoch_samplers_balanced_draw(folder):
    data_loader = make_loader(folder, seed=2)
    data_loader.class_balanced = True
    labels = torch.cat([y for _, y in batches(data_loader, 4)])
    sampler = EpochSampler(data_loader.dataset.labels, shuffle=True, seed=2)
    sampler.class_balanced = True
    assert torch.equal(labels, data_loader.dataset.labels[sampler.indices(4)])


def test_ddp_ranks_get_disjoint_shards_of_one_order(folder):
    ranks = [make_loader(folder, seed=1, rank=r, world_size=2) for r in (0, 1)]
    shards = [[i for images, _ in batches(r, 0) for _, i in codes(images)] for r in ranks]
    assert len(ranks[0]) == len(ranks[1]) == 3  # 11 each: 21 padded to 22
    order = EpochSampler(ranks[0].dataset.labels, shuffle=True, seed=1).global_order(0)
    padded = torch.cat([order, order[:1]])
    assert shards[0] == padded[0::2].tolist() and shards[1] == padded[1::2].tolist()


def test_state_dict_resumes_mid_epoch_with_the_remaining_batches(folder):
    reference = batches(make_loader(folder, jitter=0.4, num_workers=2, seed=4), 1)
    interrupted = make_loader(folder, jitter=0.4, num_workers=2, seed=4)
    interrupted.sampler.set_epoch(1)
    iterator = iter(interrupted)
    next(iterator), next(iterator)
    state = interrupted.state_dict()
    assert state == {"epoch": 1, "batches_yielded": 2, "class_balanced": False}
    resumed = make_loader(folder, jitter=0.4, num_workers=2, seed=4)
    resumed.load_state_dict(state)
    assert_same_batches(batches(resumed, 1), reference[2:])
    assert len(batches(resumed, 2)) == 6  # the next epoch is whole again


def test_decoding_batches_on_the_device_matches_decoding_in_workers(folder):
    in_worker = make_loader(folder, seed=6)
    in_worker.dataset.draft = False
    on_device = make_loader(folder, seed=6, decode_on_device=True)
    for (a, y), (b, z) in zip(batches(in_worker, 0), batches(on_device, 0), strict=True):
        assert torch.equal(y, z)
        assert (a - b).abs().max() * 0.25 * 255 <= 2.0  # libjpeg through Pillow vs torchvision


# -- ImageFolderLTDataModule ------------------------------------------------------------------
def test_folder_classes_counts_and_names_come_from_the_training_folder(folder):
    data = ImageFolderLTDataModule(train=folder, num_workers=0)
    assert data.class_names == ["ant", "bee", "cat"] and data.num_classes == 3
    assert data.class_counts == [12, 6, 3]
    assert data.validates_on_test is False and data.splits["val"] is None


def test_without_val_a_seeded_balanced_split_is_carved_from_train(folder):
    data = ImageFolderLTDataModule(train=folder, val_per_class=2, num_workers=0, seed=3)
    train, val = data.splits["train"], data.splits["val"]
    assert torch.bincount(val.labels).tolist() == [2, 2, 2]
    assert data.class_counts == [10, 4, 1]
    assert not set(train.paths) & set(val.paths)
    again = ImageFolderLTDataModule(train=folder, val_per_class=2, num_workers=0, seed=3)
    assert again.splits["val"].paths == val.paths
    with pytest.raises(ValueError, match=r"val_per_class = 3 .* class 'cat' \(2\)"):
        _ = ImageFolderLTDataModule(train=folder, val_per_class=3, num_workers=0).class_counts


def test_a_profile_makes_a_balanced_folder_long_tailed(tmp_path):
    root = write_image_folder(str(tmp_path / "train"), {f"c{i}": 10 for i in range(4)})
    data = ImageFolderLTDataModule(train=root, imbalance_ratio=10, num_workers=0, seed=1)
    assert data.class_counts == [10, 4, 2, 1]  # long_tail_counts(10, 4, 10)
    step = ImageFolderLTDataModule(train=root, imbalance_ratio=5, profile="step", num_workers=0)
    assert step.class_counts == [10, 10, 2, 2]


def test_csv_splits_with_class_names_or_indices(tmp_path):
    write_image_folder(str(tmp_path / "img"), {"x": 3, "y": 2})
    rows = ["x/x_0000.jpg,x", "x/x_0001.jpg,x", "y/y_0000.jpg,y", "x/x_0002.jpg,x"]
    (tmp_path / "train.csv").write_text("path,label,extra\n" + "\n".join(f"{r},1" for r in rows))
    (tmp_path / "test.csv").write_text("label,path\n1,y/y_0001.jpg\n0,x/x_0000.jpg\n")
    data = ImageFolderLTDataModule(
        train=str(tmp_path / "train.csv"),
        test=str(tmp_path / "test.csv"),
        root=str(tmp_path / "img"),
        num_workers=0,
    )
    with pytest.warns(UserWarning, match="1 test image.* also training"):
        assert data.class_names == ["x", "y"] and data.class_counts == [3, 1]
    assert data.splits["test"].labels.tolist() == [1, 0]
    assert data.validates_on_test


# -- training through Lightning -------------------------------------------------------------
def test_fit_and_validate_with_workers_through_lightning(folder, tmp_path):
    import lightning as L
    from torch import nn

    from ltlight import LongTailModule

    backbone = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 3))
    module = LongTailModule(backbone)
    data = ImageFolderLTDataModule(
        train=folder, val_per_class=1, batch_size=4, num_workers=2, image_size=16, resize=20
    )
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, enable_checkpointing=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=data)
    assert trainer.state.finished and trainer.global_step == 2 * math.ceil(18 / 4)
    assert module.class_counts == [11, 5, 2]


def test_write_jpeg_round_trips_the_code_colour(tmp_path):
    write_jpeg(str(tmp_path / "a.jpg"), code_colour(7, 300))
    assert read_code(np.array(Image.open(tmp_path / "a.jpg"))) == (7, 300)
