"""Class-aware sampling (DB-loss's ClassAwareSampler) as a mode of the epoch sampler: uniform
class frequencies, the same image frequencies as the official algorithm, identical batches with
any number of workers, DDP shards, exact resume, and deferred re-sampling switching to it."""

import random
import warnings
from collections import Counter

import lightning as L
import pytest
import torch
from fake_datasets import write_image_folder
from fake_multilabel import write_multilabel_csvs
from torch import nn

from ltlight import LongTailModule
from ltlight.callbacks import DeferredResampling
from ltlight.data import ImageFolderLTDataModule
from ltlight.data.sampling import (
    CLASS_AWARE_IMAGES_PER_PICK,
    EpochSampler,
    class_aware_draw,
    class_members,
)

LONG_TAIL = torch.tensor([0] * 500 + [1] * 100 + [2] * 20 + [3] * 5 + [4] * 1)


def multi_label_targets(n=300, num_classes=6, seed=0):
    """Random long-tailed multi-label targets (class c present with probability 0.5 / 2^c), every
    class present at least once, some entries uncertain (NaN)."""
    generator = torch.Generator().manual_seed(seed)
    p = 0.5 / 2 ** torch.arange(num_classes, dtype=torch.float32)
    targets = (torch.rand(n, num_classes, generator=generator) < p).float()
    targets[torch.arange(num_classes), torch.arange(num_classes)] = 1.0
    targets[torch.rand(n, num_classes, generator=generator) < 0.05] = float("nan")
    return targets


def official_class_aware(targets, n, seed):
    """DB-loss's ClassAwareSampler written again (RandomCycleIter + class_aware_sample_generator,
    num_samples_cls = 3) with Python's random module."""
    rng = random.Random(seed)

    def cycle(items):
        items = list(items)
        while True:
            rng.shuffle(items)
            yield from items

    members = [(targets[:, c] == 1).nonzero().flatten().tolist() for c in range(targets.shape[1])]
    class_iter = cycle(range(len(members)))
    image_iters = [cycle(m) for m in members]
    drawn = []
    while len(drawn) < n:
        c = next(class_iter)
        drawn += [next(image_iters[c]) for _ in range(3)]
    return drawn[:n]


def test_every_class_is_picked_equally_often_on_long_tailed_labels():
    sampler = EpochSampler(LONG_TAIL, shuffle=True, sampling="class_aware")
    n = len(LONG_TAIL)
    for epoch in range(3):
        counts = torch.bincount(LONG_TAIL[sampler.indices(epoch)], minlength=5)
        # classes come in cycles: picks per class differ by at most one pick (3 draws) + the cut
        assert int(counts.sum()) == n
        assert (counts - n / 5).abs().max() <= 2 * CLASS_AWARE_IMAGES_PER_PICK
    instance = torch.bincount(LONG_TAIL[EpochSampler(LONG_TAIL, shuffle=True).indices(0)])
    assert instance.tolist() == [500, 100, 20, 5, 1]


def test_multi_label_draws_contain_their_class_and_cycle_through_its_images():
    targets = multi_label_targets()
    members, counts = class_members(targets)
    images, classes = class_aware_draw(members, counts, 3000, torch.Generator().manual_seed(1))
    assert bool((targets[images, classes] == 1).all())  # never an uncertain or absent class
    picks = Counter(classes[::CLASS_AWARE_IMAGES_PER_PICK].tolist())
    assert max(picks.values()) - min(picks.values()) <= 1  # uniform class frequencies
    for c in range(targets.shape[1]):  # within a class, every image once per cycle
        per_image = Counter(images[classes == c].tolist())
        size = int(counts[c])
        drawn = int((classes == c).sum())
        assert len(per_image) == min(size, drawn)
        assert max(per_image.values()) - min(per_image.values()) <= 1 or drawn < size


def test_image_frequencies_match_the_official_sampler():
    targets = multi_label_targets(n=200, seed=2)
    sampler = EpochSampler(targets, shuffle=True, sampling="class_aware")
    ours = torch.cat([sampler.indices(epoch) for epoch in range(40)])
    official = torch.tensor(official_class_aware(targets, len(ours), seed=0))
    ours_p = torch.bincount(ours, minlength=200).double() / len(ours)
    official_p = torch.bincount(official, minlength=200).double() / len(official)
    assert 0.5 * (ours_p - official_p).abs().sum() < 0.05  # total variation distance
    # and far from instance sampling, which the long tail makes very different
    instance_p = torch.full((200,), 1 / 200, dtype=torch.float64)
    assert 0.5 * (ours_p - instance_p).abs().sum() > 0.2


def test_ddp_ranks_take_disjoint_shards_of_one_class_aware_order():
    targets = multi_label_targets(n=101)
    shards = [EpochSampler(targets, True, seed=5, rank=r, world_size=3, sampling="class_aware")
              for r in range(3)]  # fmt: skip
    order = shards[0].global_order(2)
    padded = torch.cat([order, order[: 3 * shards[0].num_samples - len(order)]])
    for rank, shard in enumerate(shards):
        assert torch.equal(shard.indices(2), padded[rank::3])


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("class_aware"))
    return write_multilabel_csvs(root, "wide")


def loader(csv_data, **kwargs):
    options = dict(batch_size=4, image_size=16, resize=20, num_workers=0, seed=7)
    data = ImageFolderLTDataModule(train=csv_data["train"], test=csv_data["test"],
                                   sampling="class_aware", **(options | kwargs))  # fmt: skip
    return data.train_dataloader()


def epoch_batches(data_loader, epoch):
    data_loader.sampler.set_epoch(epoch)
    return list(data_loader)


def assert_same(a, b):
    assert len(a) == len(b)
    for (images_a, labels_a), (images_b, labels_b) in zip(a, b, strict=True):
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)


def test_class_aware_batches_are_identical_with_any_number_of_workers(csv_data):
    main = loader(csv_data)
    assert main.sampler.sampling == "class_aware"
    assert_same(epoch_batches(main, 1), epoch_batches(loader(csv_data, num_workers=2), 1))


def test_class_aware_resumes_mid_epoch_exactly(csv_data):
    reference = epoch_batches(loader(csv_data), 3)
    interrupted = loader(csv_data)
    interrupted.sampler.set_epoch(3)
    iterator = iter(interrupted)
    next(iterator), next(iterator)
    state = interrupted.state_dict()
    assert state == {"epoch": 3, "batches_yielded": 2, "class_balanced": True,
                     "sampling": "class_aware"}  # fmt: skip
    options = dict(batch_size=4, image_size=16, resize=20, num_workers=0, seed=7)
    resumed = ImageFolderLTDataModule(train=csv_data["train"], **options).train_dataloader()
    assert resumed.sampler.sampling == "instance"
    resumed.load_state_dict(state)
    assert resumed.sampler.sampling == "class_aware"
    assert_same(epoch_batches(resumed, 3), reference[2:])


class RecordSampling(L.Callback):
    def __init__(self):
        self.modes = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.modes.append(trainer.train_dataloader.sampler.sampling)


def test_deferred_resampling_switches_to_class_aware_at_its_epoch(tmp_path):
    folder = write_image_folder(str(tmp_path / "train"), {"ant": 9, "bee": 3, "cat": 1})
    data = ImageFolderLTDataModule(train=folder, batch_size=4, image_size=16, resize=20,
                                   num_workers=0)  # fmt: skip
    backbone = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 3))
    record = RecordSampling()
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, enable_checkpointing=False,
        limit_val_batches=0, callbacks=[DeferredResampling(1, sampling="class_aware"), record],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(LongTailModule(backbone), datamodule=data)
    assert record.modes == ["instance", "class_aware", "class_aware"]


def test_sampling_modes_are_checked():
    with pytest.raises(ValueError, match="sampling must be one of"):
        EpochSampler(LONG_TAIL, True, sampling="class_uniform")
    with pytest.raises(ValueError, match="sampling must be one of"):
        DeferredResampling(1, sampling="instance")
