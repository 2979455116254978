"""DeviceDataLoader: labels, epochs, seeds, class-balanced mode, DDP shards, exact resume."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from ltlight.data import DeviceDataLoader, DigitsLTDataModule
from ltlight.data.sampling import EpochSampler

COUNTS = [40, 20, 10, 5, 2]
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def long_tailed_split(counts=COUNTS, size=12):
    """Images whose every pixel encodes (label, index): channel 0 label, channels 1-2 the index."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    index = torch.arange(len(labels))
    codes = torch.stack([labels, index % 256, index // 256], 1).to(torch.uint8)
    return codes.view(-1, 3, 1, 1).expand(-1, 3, size, size).contiguous(), labels


def loader(images=None, labels=None, **kwargs):
    if images is None:
        images, labels = long_tailed_split()
    options = dict(batch_size=16, mean=MEAN, std=STD, shuffle=True, crop_padding=4, flip=True)
    return DeviceDataLoader(images, labels, **(options | kwargs))


def decode(batch_images):
    """Undo the normalisation and read the centre pixel: (label, index) per image."""
    mean, std = torch.tensor(MEAN).view(1, 3), torch.tensor(STD).view(1, 3)
    centre = batch_images[:, :, batch_images.shape[2] // 2, batch_images.shape[3] // 2]
    codes = ((centre * std + mean) * 255).round().long()
    return codes[:, 0], codes[:, 1] + 256 * codes[:, 2]


def epoch_of(data_loader, epoch):
    data_loader.sampler.set_epoch(epoch)
    return list(data_loader)


def test_batches_are_normalised_float_on_the_data_device_with_int64_labels():
    images, labels = next(iter(loader()))
    assert images.dtype == torch.float32 and images.shape == (16, 3, 12, 12)
    assert labels.dtype == torch.int64 and labels.device == images.device == torch.device("cpu")


def test_images_keep_their_labels_through_crop_flip_and_normalisation():
    for images, labels in loader():
        decoded_labels, _ = decode(images)
        assert torch.equal(decoded_labels, labels)


def test_an_epoch_visits_every_image_exactly_once():
    data_loader = loader()
    for epoch in (0, 1):
        seen = torch.cat([decode(images)[1] for images, _ in epoch_of(data_loader, epoch)])
        assert len(data_loader) == 5  # ceil(77 / 16)
        assert torch.equal(seen.sort().values, torch.arange(sum(COUNTS)))


def test_drop_last_drops_the_incomplete_batch():
    data_loader = loader(drop_last=True)
    assert len(data_loader) == 4 == len(list(data_loader))


def test_order_and_augmentation_are_a_function_of_seed_and_epoch():
    first, again = epoch_of(loader(seed=3), 2), epoch_of(loader(seed=3), 2)
    for (a, ya), (b, yb) in zip(first, again, strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    other_epoch, other_seed = epoch_of(loader(seed=3), 3), epoch_of(loader(seed=4), 2)
    assert not torch.equal(first[0][1], other_epoch[0][1])
    assert not torch.equal(first[0][1], other_seed[0][1])


def test_the_epoch_is_read_when_the_first_batch_is_drawn_not_at_iter():
    # Lightning calls iter(loader) before sampler.set_epoch(epoch) in the fit loop.
    data_loader = loader()
    iterator = iter(data_loader)
    data_loader.sampler.set_epoch(5)
    images, _ = next(iterator)
    assert torch.equal(images, epoch_of(loader(), 5)[0][0])


def test_evaluation_loader_keeps_the_split_order_without_augmentation():
    images, labels = long_tailed_split()
    batches = list(loader(images, labels, shuffle=False, crop_padding=None, flip=False))
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    expected = (images.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(
        STD
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), expected)


def test_default_sampling_follows_the_long_tail_and_class_balanced_mode_flattens_it():
    data_loader = loader(batch_size=77)
    instance = torch.cat([y for epoch in range(3) for _, y in epoch_of(data_loader, epoch)])
    assert torch.bincount(instance).tolist() == [3 * n for n in COUNTS]

    data_loader.class_balanced = True
    assert data_loader.sampler.class_balanced  # what DeferredResampling flips
    epochs = [epoch_of(data_loader, epoch) for epoch in range(40)]
    assert all(len(batches) == 1 and len(batches[0][1]) == 77 for batches in epochs)
    balanced = torch.cat([y for batches in epochs for _, y in batches])
    frequencies = torch.bincount(balanced).float() / len(balanced)
    torch.testing.assert_close(frequencies, torch.full((5,), 0.2), rtol=0, atol=0.02)
    # Every image of a class is drawn, with replacement: the rarest two are seen many times.
    _, index = decode(torch.cat([x for batches in epochs for x, _ in batches]))
    assert index.unique().numel() == sum(COUNTS)
    # Seeded like the shuffled order: the same epoch gives the same balanced sample.
    assert torch.equal(epoch_of(data_loader, 7)[0][1], epochs[7][0][1])


@pytest.mark.parametrize("class_balanced", [False, True])
def test_ddp_training_ranks_get_disjoint_equal_shards_that_cover_the_epoch(class_balanced):
    images, labels = long_tailed_split()  # 77 images over 3 ranks: 26 each, 1 padded
    world_size, epoch, shuffle = 3, 4, True
    single = loader(images, labels, shuffle=shuffle, batch_size=1000)
    single.class_balanced = class_balanced
    global_order = single.sampler.global_order(epoch)
    shards = []
    for rank in range(world_size):
        sharded = loader(images, labels, shuffle=shuffle, rank=rank, world_size=world_size)
        sharded.class_balanced = class_balanced
        batches = epoch_of(sharded, epoch)
        assert len(sharded) == len(batches) == 2  # ceil(26 / 16), the same on every rank
        shards.append(torch.cat([decode(x)[1] for x, _ in batches]))
    assert all(len(shard) == 26 for shard in shards)
    # Rank r takes positions r, r + 3, ... of the padded global order (DistributedSampler's rule).
    padded = torch.cat([global_order, global_order[:1]])
    for rank, shard in enumerate(shards):
        assert torch.equal(shard, padded[rank::world_size])
    if not class_balanced:
        positions = torch.cat(shards)
        assert positions.unique().numel() == 77  # all images, the padding repeats one of them


def test_ddp_evaluation_shards_count_every_image_exactly_once():
    images, labels = long_tailed_split()  # 77 images over 3 ranks: 26, 26, 25 — nothing padded
    world_size = 3
    shards, lengths = [], []
    for rank in range(world_size):
        sharded = loader(images, labels, shuffle=False, rank=rank, world_size=world_size)
        sharded.sampler.set_epoch(2)
        batches = list(sharded)
        lengths.append((len(sharded.sampler), len(sharded), len(batches)))
        shards.append(torch.cat([decode(x)[1] for x, _ in batches]))
    assert lengths == [(26, 2, 2), (26, 2, 2), (25, 2, 2)]
    for rank, shard in enumerate(shards):
        assert torch.equal(shard, torch.arange(77)[rank::world_size])
    assert torch.equal(torch.cat(shards).sort().values, torch.arange(77))


def test_an_evaluation_split_smaller_than_the_number_of_processes_is_refused():
    with pytest.raises(ValueError, match=r"1 image\(s\) for world_size=2 processes"):
        EpochSampler(torch.zeros(1, dtype=torch.long), shuffle=False, rank=1, world_size=2)
    padded = EpochSampler(torch.zeros(1, dtype=torch.long), shuffle=True, rank=1, world_size=2)
    assert padded.indices(0).tolist() == [0]  # training pads: every rank steps alike


def test_ranks_augment_differently():
    images, labels = long_tailed_split(counts=[20, 20])
    same = torch.cat([images, images]), torch.cat([labels, labels])
    rank0 = next(iter(loader(*same, shuffle=False, rank=0, world_size=2)))[0]
    rank1 = next(iter(loader(*same, shuffle=False, rank=1, world_size=2)))[0]
    assert not torch.equal(rank0, rank1)


def test_state_dict_resume_mid_epoch_yields_exactly_the_remaining_batches():
    reference = loader()
    expected = {epoch: epoch_of(reference, epoch) for epoch in (2, 3)}

    interrupted = loader()
    interrupted.sampler.set_epoch(2)
    iterator = iter(interrupted)
    for _ in range(3):
        next(iterator)
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "batches_yielded": 3, "class_balanced": False}

    resumed = loader()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    remaining = epoch_of(resumed, 2)
    assert len(remaining) == len(expected[2]) - 3
    for (a, ya), (b, yb) in zip(remaining, expected[2][3:], strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    # The skip applies once: the next epoch is whole again.
    next_epoch = epoch_of(resumed, 3)
    assert len(next_epoch) == len(expected[3])
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(next_epoch, expected[3], strict=True))


def test_a_state_saved_in_another_epoch_does_not_skip_batches():
    resumed = loader()
    resumed.load_state_dict({"epoch": 1, "batches_yielded": 5})  # saved at the end of epoch 1
    assert len(epoch_of(resumed, 2)) == len(resumed)


def test_state_restores_class_balanced_mode():
    resumed = loader()
    resumed.load_state_dict({"epoch": 0, "batches_yielded": 1, "class_balanced": True})
    assert resumed.class_balanced


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
        (dict(rank=2, world_size=2), r"rank must be in \[0, 2\), got 2"),
        (dict(world_size=0), r"world_size must be >= 1, got 0"),
        (dict(crop_padding=-1), r"crop_padding must be >= 0 or None, got -1"),
    ],
)
def test_bad_loader_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        loader(**kwargs)


def test_float_images_are_refused_with_the_expected_layout():
    images, labels = long_tailed_split()
    with pytest.raises(ValueError, match=r"images must be a uint8 tensor \(N, C, H, W\)"):
        loader(images.float(), labels)


# -- with Lightning's real Trainer ------------------------------------------------------------
class RecordingModule(L.LightningModule):
    """A linear classifier that records every training batch it is given."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.seen = []

    def training_step(self, batch, batch_idx):
        images, labels = batch
        self.seen.append((self.current_epoch, batch_idx, images.clone(), labels.clone()))
        return nn.functional.cross_entropy(self.linear(images.flatten(1)), labels)

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        self.log("val_loss", nn.functional.cross_entropy(self.linear(images.flatten(1)), labels))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class BalanceFromEpochOne(L.Callback):
    """Class-balanced sampling from epoch 1, set as DeferredResampling does it.

    Lightning 2.6 skips ``on_train_epoch_start`` when it resumes from a checkpoint saved inside an
    epoch — and also from one saved after an epoch's last batch, where the next epoch's hook is
    skipped too — so the mode is applied again in ``on_train_start``.
    """

    def on_train_start(self, trainer, pl_module):
        trainer.train_dataloader.class_balanced = trainer.current_epoch >= 1

    on_train_epoch_start = on_train_start


def fit(tmp_path, model, ckpt_path=None, callbacks=()):
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=[BalanceFromEpochOne(), *callbacks],
        enable_checkpointing=bool(callbacks),
    )
    trainer.fit(model, DigitsLTDataModule(augment=True, batch_size=64), ckpt_path=ckpt_path)
    return trainer


@pytest.fixture(scope="module")
def lightning_runs(tmp_path_factory):
    """One uninterrupted 2-epoch run, and one that saved a checkpoint after every step."""
    root = tmp_path_factory.mktemp("lightning_runs")
    uninterrupted = RecordingModule()
    trainer = fit(root / "a", uninterrupted)
    checkpoints = ModelCheckpoint(
        dirpath=root / "ckpt", every_n_train_steps=1, save_top_k=-1, filename="{step}"
    )
    fit(root / "b", RecordingModule(), callbacks=[checkpoints])
    return uninterrupted.seen, len(trainer.train_dataloader), root / "ckpt"


def test_lightning_calls_set_epoch_so_each_epoch_is_the_loaders_own(lightning_runs):
    seen, batches_per_epoch, _ = lightning_runs
    assert batches_per_epoch == 8  # 503 Digits-LT images, batch 64
    # The batches are the loader's own epochs 0 and 1 (epoch 1 class-balanced): Lightning called
    # sampler.set_epoch(e) before each epoch.
    direct = DigitsLTDataModule(augment=True, batch_size=64).train_dataloader()
    expected = epoch_of(direct, 0)
    direct.class_balanced = True
    expected += epoch_of(direct, 1)
    assert [(e, i) for e, i, _, _ in seen] == [(e, i) for e in (0, 1) for i in range(8)]
    for (_, _, images, labels), (x, y) in zip(seen, expected, strict=True):
        assert torch.equal(images, x) and torch.equal(labels, y)


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
@pytest.mark.parametrize(
    ("step", "state"),
    [
        (11, {"epoch": 1, "batches_yielded": 3, "class_balanced": True}),  # mid-epoch 1
        (8, {"epoch": 0, "batches_yielded": 8, "class_balanced": False}),  # end of epoch 0
    ],
)
def test_lightning_saves_the_loader_state_and_resumes_with_the_same_batches(
    lightning_runs, tmp_path, step, state
):
    seen, _, checkpoints = lightning_runs
    path = checkpoints / f"step={step}.ckpt"
    saved = torch.load(path, weights_only=False)["loops"]["fit_loop"]["state_dict"]
    assert saved["combined_loader"] == [state]

    resumed = RecordingModule()
    fit(tmp_path, resumed, ckpt_path=str(path))
    assert [(e, i) for e, i, _, _ in resumed.seen] == [(e, i) for e, i, _, _ in seen[step:]]
    for (_, _, images, labels), (_, _, x, y) in zip(resumed.seen, seen[step:], strict=True):
        assert torch.equal(images, x) and torch.equal(labels, y)
