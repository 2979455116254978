"""The long-tailed datamodules on fake files in the real formats, and Digits-LT end to end."""

import os
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torchvision.datasets.cifar
from jsonargparse import ArgumentParser
from torch import nn

from ltlight.data import (
    CIFAR10LTDataModule,
    CIFAR100LTDataModule,
    DigitsLTDataModule,
    FashionMNISTLTDataModule,
    long_tail_counts,
    long_tail_indices,
)
from ltlight.data.tensor.fashion_mnist import SYSTEM_DIR

CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def decode(datamodule, images):
    """Undo the normalisation; the fake images' centre pixel holds (label, index in split)."""
    mean = torch.tensor(datamodule.mean).view(1, -1)
    std = torch.tensor(datamodule.std).view(1, -1)
    centre = images[:, :, images.shape[2] // 2, images.shape[3] // 2]
    codes = ((centre * std + mean) * 255).round().long()
    if codes.shape[1] == 1:
        return codes[:, 0], None
    return codes[:, 0], codes[:, 1] + 256 * codes[:, 2]


def attach_fake_trainer(datamodule, rank, world_size):
    """What the datamodule reads from a DDP trainer: the device, the rank and the world size."""
    datamodule.trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
        global_rank=rank,
        world_size=world_size,
    )


# -- before setup -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("datamodule", "shape", "counts"),
    [
        (CIFAR10LTDataModule(), (10, 3, 32), CIFAR10_LT_100),
        (CIFAR100LTDataModule(), (100, 3, 32), long_tail_counts(500, 100, 100)),
        (FashionMNISTLTDataModule(), (10, 1, 28), long_tail_counts(6000, 10, 100)),
        (DigitsLTDataModule(), (10, 1, 8), long_tail_counts(124, 10, 10)),
        (
            CIFAR10LTDataModule(imbalance_ratio=10, profile="step"),
            (10, 3, 32),
            [5000] * 5 + [500] * 5,
        ),
    ],
)
def test_class_counts_and_shapes_are_known_at_construction(datamodule, shape, counts):
    assert datamodule.class_counts == counts
    assert (datamodule.num_classes, datamodule.in_channels, datamodule.image_size) == shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(imbalance_ratio=0.5), r"imbalance_ratio must be >= 1"),
        (dict(profile="linear"), r"profile must be one of \('exp', 'step'\)"),
        (dict(step_fraction=1.5), r"step_fraction must be in \(0, 1\)"),
        (dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
        (dict(eval_batch_size=0), r"eval_batch_size must be an integer >= 1, got 0"),
        (dict(imbalance_ratio=200), r"imbalance_ratio must be <= max_count \(124\)"),
    ],
)
def test_bad_datamodule_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DigitsLTDataModule(**kwargs)


def test_constructor_arguments_are_typed_for_jsonargparse():
    parser = ArgumentParser()
    parser.add_class_arguments(CIFAR100LTDataModule, "data")
    config = parser.parse_args(["--data.imbalance_ratio=50", "--data.profile=step"])
    datamodule = parser.instantiate(config).data
    assert datamodule.class_counts == [500] * 50 + [10] * 50
    assert datamodule.download is True and datamodule.data_dir == "data"


# -- CIFAR on fake files ----------------------------------------------------------------------
def test_cifar10_lt_keeps_the_seeded_long_tailed_subset_of_the_training_split(cifar10_dir):
    datamodule = CIFAR10LTDataModule(data_dir=cifar10_dir, download=False, seed=1)
    datamodule.setup("fit")
    images, labels = datamodule.train_data
    assert images.shape == (12406, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == CIFAR10_LT_100
    # The fake pixels carry each image's index in the training split: the subset is exactly
    # long_tail_indices(training labels, counts, seed).
    full_labels = torch.tensor(torchvision.datasets.cifar.CIFAR10(cifar10_dir).targets)
    index = images[:, 1, 0, 0].long() + 256 * images[:, 2, 0, 0].long()
    assert torch.equal(index, long_tail_indices(full_labels, CIFAR10_LT_100, seed=1))
    assert torch.equal(images[:, 0, 0, 0].long(), labels)


def test_cifar10_lt_epoch_covers_the_long_tailed_set_and_images_keep_labels(cifar10_dir):
    datamodule = CIFAR10LTDataModule(data_dir=cifar10_dir, download=False, batch_size=256)
    datamodule.setup("fit")
    train_loader = datamodule.train_dataloader()
    assert len(train_loader) == 49  # ceil(12406 / 256)
    seen = []
    for images, labels in train_loader:
        decoded_labels, index = decode(datamodule, images)
        assert torch.equal(decoded_labels, labels)
        seen.append(index)
    stored = datamodule.train_data[0]
    expected = stored[:, 1, 0, 0].long() + 256 * stored[:, 2, 0, 0].long()
    assert torch.equal(torch.cat(seen).sort().values, expected.sort().values)


def test_cifar10_lt_validation_is_the_whole_balanced_test_split_in_order(cifar10_dir):
    datamodule = CIFAR10LTDataModule(data_dir=cifar10_dir, download=False, eval_batch_size=1000)
    datamodule.setup("validate")
    assert datamodule.train_data is None  # evaluation does not load the training split
    for make_loader in (
        datamodule.val_dataloader,
        datamodule.test_dataloader,
        datamodule.predict_dataloader,
    ):
        batches = list(make_loader())
        assert len(batches) == 10
        labels = torch.cat([y for _, y in batches])
        assert torch.bincount(labels).tolist() == [1000] * 10
        images = torch.cat([x for x, _ in batches])
        decoded_labels, index = decode(datamodule, images)
        assert torch.equal(decoded_labels, labels)
        assert torch.equal(index, torch.arange(10000))  # no shuffling, no augmentation
        corner = images[:, 0, 0, 0]  # no zero padding crept in: the corner is the image's own
        assert torch.equal(corner, images[:, 0, 16, 16])


def test_cifar100_lt_counts_and_balanced_validation(cifar100_dir):
    datamodule = CIFAR100LTDataModule(data_dir=cifar100_dir, download=False)
    datamodule.setup("fit")
    assert torch.bincount(datamodule.train_data[1]).tolist() == long_tail_counts(500, 100, 100)
    assert len(datamodule.train_data[1]) == 10847
    assert torch.bincount(datamodule.test_data[1]).tolist() == [100] * 100
    images, labels = next(iter(datamodule.train_dataloader()))
    assert torch.equal(decode(datamodule, images)[0], labels)


def test_same_seed_same_subset_other_seed_same_counts(cifar10_dir):
    subsets = []
    for seed in (0, 0, 1):
        datamodule = CIFAR10LTDataModule(data_dir=cifar10_dir, download=False, seed=seed)
        datamodule.setup("fit")
        subsets.append(datamodule.train_data)
    assert torch.equal(subsets[0][0], subsets[1][0])
    assert not torch.equal(subsets[0][0], subsets[2][0])
    assert torch.equal(torch.bincount(subsets[2][1]), torch.bincount(subsets[0][1]))


def test_ddp_ranks_see_disjoint_shards_of_the_epoch_and_the_same_class_counts(cifar10_dir):
    shards, eval_shards = [], []
    for rank in range(2):
        datamodule = CIFAR10LTDataModule(data_dir=cifar10_dir, download=False, batch_size=512)
        attach_fake_trainer(datamodule, rank, world_size=2)
        assert datamodule.class_counts == CIFAR10_LT_100  # the whole set's, on every rank
        train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
        assert len(train_loader) == 13  # ceil(6203 / 512) batches on each rank
        shards.append(torch.cat([decode(datamodule, x)[1] for x, _ in train_loader]))
        eval_shards.append(torch.cat([decode(datamodule, x)[1] for x, _ in val_loader]))
    assert len(shards[0]) == len(shards[1]) == 6203
    assert len(set(shards[0].tolist()) & set(shards[1].tolist())) == 0
    assert len(set(shards[0].tolist()) | set(shards[1].tolist())) == 12406
    assert torch.equal(torch.cat(eval_shards).sort().values, torch.arange(10000))


def test_prepare_data_does_not_download_what_is_there(cifar10_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    CIFAR10LTDataModule(data_dir=cifar10_dir, download=True).prepare_data()


def test_missing_cifar_without_download_says_where_it_looked_and_how_to_get_it(tmp_path):
    datamodule = CIFAR100LTDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError) as error:
        datamodule.setup("fit")
    message = str(error.value)
    assert os.path.join(str(tmp_path), "cifar-100-python") in message
    assert "download=True" in message and "cifar-100-python.tar.gz" in message


# -- Fashion-MNIST ----------------------------------------------------------------------------
def test_fashion_mnist_lt_reads_torchvisions_layout(fashion_mnist_dir):
    datamodule = FashionMNISTLTDataModule(data_dir=fashion_mnist_dir, download=False)
    datamodule.setup("fit")
    assert torch.bincount(datamodule.train_data[1]).tolist() == long_tail_counts(6000, 10, 100)
    assert torch.bincount(datamodule.test_data[1]).tolist() == [1000] * 10
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (128, 1, 28, 28)
    assert torch.equal(decode(datamodule, images)[0], labels)


def test_fashion_mnist_lt_uses_the_debian_package_files_without_download(
    fashion_mnist_system_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(FashionMNISTLTDataModule, "system_dir", fashion_mnist_system_dir)
    datamodule = FashionMNISTLTDataModule(data_dir=str(tmp_path), download=False)
    datamodule.prepare_data()
    raw = tmp_path / "FashionMNIST" / "raw"
    assert sorted(os.listdir(raw)) == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ]
    datamodule.setup("fit")
    assert len(datamodule.test_data[1]) == 10000


def test_missing_fashion_mnist_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(FashionMNISTLTDataModule, "system_dir", str(tmp_path / "no-package"))
    datamodule = FashionMNISTLTDataModule(data_dir=str(tmp_path), download=False)
    datamodule.prepare_data()  # download=False: nothing to do, no error yet
    with pytest.raises(FileNotFoundError) as error:
        datamodule.setup("validate")
    message = str(error.value)
    assert os.path.join(str(tmp_path), "FashionMNIST", "raw") in message
    assert str(tmp_path / "no-package") in message
    assert "download=True" in message and "apt-get install dataset-fashion-mnist" in message


@pytest.mark.skipif(not os.path.isdir(SYSTEM_DIR), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    datamodule = FashionMNISTLTDataModule(
        data_dir=str(tmp_path), download=False, imbalance_ratio=10
    )
    datamodule.setup("fit")
    images, labels = datamodule.train_data
    assert images.shape == (sum(long_tail_counts(6000, 10, 10)), 1, 28, 28)
    assert torch.bincount(labels).tolist() == long_tail_counts(6000, 10, 10)
    assert torch.bincount(datamodule.test_data[1]).tolist() == [1000] * 10
    # Real images: normalised with the dataset's statistics, a batch is near zero mean, unit std.
    batch, _ = next(iter(datamodule.val_dataloader()))
    assert abs(float(batch.mean())) < 0.2 and 0.8 < float(batch.std()) < 1.2


# -- Digits-LT end to end ---------------------------------------------------------------------
def test_digits_lt_split_is_fixed_balanced_and_disjoint():
    a, b = DigitsLTDataModule(seed=0), DigitsLTDataModule(seed=1)
    for datamodule in (a, b):
        datamodule.setup("fit")
    assert torch.bincount(a.test_data[1]).tolist() == [50] * 10
    assert torch.equal(a.test_data[0], b.test_data[0])  # the test split ignores the seed
    assert torch.bincount(a.train_data[1]).tolist() == a.class_counts
    assert not torch.equal(a.train_data[0], b.train_data[0])  # the subset follows the seed
    train = {tuple(image.flatten().tolist()) for image in a.train_data[0]}
    test = {tuple(image.flatten().tolist()) for image in a.test_data[0]}
    assert len(train & test) <= 2  # a few digits may be pixel-identical, but no image is shared
    assert int(a.train_data[0].max()) == 255


class DigitsClassifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        self.correct = torch.zeros(10)
        self.total = torch.zeros(10)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return nn.functional.cross_entropy(self.net(images), labels)

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        hits = (self.net(images).argmax(1) == labels).float()
        self.correct.index_add_(0, labels, hits)
        self.total.index_add_(0, labels, torch.ones_like(hits))

    def on_validation_epoch_start(self):
        self.correct.zero_()
        self.total.zero_()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def test_digits_lt_trains_end_to_end_with_lightning(tmp_path):
    torch.manual_seed(0)
    model = DigitsClassifier()
    trainer = L.Trainer(
        max_epochs=15,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, DigitsLTDataModule())
    assert model.total.tolist() == [50.0] * 10  # validation: the whole balanced test set
    balanced_accuracy = float((model.correct / model.total).mean())
    assert balanced_accuracy > 0.85


# -- the validation split -----------------------------------------------------------------------
def test_validation_split_is_balanced_seeded_and_disjoint_from_train_and_test(cifar10_dir):
    datamodule = CIFAR10LTDataModule(
        data_dir=cifar10_dir, download=False, seed=3, val_per_class=20, eval_batch_size=1000
    )
    # Carved before the long-tailed subset: the head keeps min(5000, 5000 − 20).
    assert datamodule.class_counts == [4980, *CIFAR10_LT_100[1:]]
    datamodule.setup("fit")
    train_images, train_labels = datamodule.train_data
    val_images, val_labels = datamodule.val_data
    assert torch.bincount(val_labels).tolist() == [20] * 10
    assert torch.bincount(train_labels).tolist() == datamodule.class_counts
    # The fake pixels hold each image's index in the training split: disjoint, both from it.
    train_index = train_images[:, 1, 0, 0].long() + 256 * train_images[:, 2, 0, 0].long()
    val_index = val_images[:, 1, 0, 0].long() + 256 * val_images[:, 2, 0, 0].long()
    assert not set(train_index.tolist()) & set(val_index.tolist())
    full_labels = torch.tensor(torchvision.datasets.cifar.CIFAR10(cifar10_dir).targets)
    assert torch.equal(full_labels[val_index], val_labels)
    # The validation loader serves it, the test loader the whole test split.
    val_batch = torch.cat([y for _, y in datamodule.val_dataloader()])
    assert torch.equal(val_batch, val_labels)
    assert len(torch.cat([y for _, y in datamodule.test_dataloader()])) == 10000
    # Same seed, same split; another seed, another one with the same counts.
    again = CIFAR10LTDataModule(data_dir=cifar10_dir, download=False, seed=3, val_per_class=20)
    again.setup("fit")
    assert torch.equal(again.val_data[0], val_images)
    other = CIFAR10LTDataModule(data_dir=cifar10_dir, download=False, seed=4, val_per_class=20)
    other.setup("fit")
    assert not torch.equal(other.val_data[0], val_images)


def test_without_validation_split_the_test_split_validates(cifar10_dir):
    datamodule = CIFAR10LTDataModule(data_dir=cifar10_dir, download=False, eval_batch_size=1000)
    assert datamodule.validates_on_test
    assert len(torch.cat([y for _, y in datamodule.val_dataloader()])) == 10000


def test_val_per_class_larger_than_a_class_pool_is_an_error_naming_the_class(cifar10_dir):
    with pytest.raises(ValueError, match=r"val_per_class must be an integer in \[0, 5000\)"):
        CIFAR10LTDataModule(data_dir=cifar10_dir, val_per_class=5000)
    with pytest.raises(ValueError, match="val_per_class"):
        DigitsLTDataModule(val_per_class=-1)
    # A pool that is short for one class (a user's data): the shared helper names it.
    from ltlight.data.profiles import validation_indices

    with pytest.raises(ValueError, match="'cat'"):
        validation_indices([0, 0, 0, 1], per_class=1, class_names=["dog", "cat"])
