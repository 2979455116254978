"""What both loaders share: the samples a rank visits in an epoch, and its place inside it.

Both loaders (:class:`~ltlight.data.tensor.loader.DeviceDataLoader` for a split held on the
device, :class:`~ltlight.data.files.loader.FileDataLoader` for image files) draw their epochs
from :class:`EpochSampler` and resume through :class:`ResumableEpochLoader`.

What each rank sees is a pure function of ``(seed, epoch, batch index, rank)``: the epoch's
order comes from a generator seeded with ``(seed, epoch)``, a batch's random numbers (crop, flip,
jitter) from one seeded with ``(seed, stream, epoch, rank, position)``
(:meth:`EpochSampler.seed_for`). There is no RNG state to save, so a run that resumes mid-epoch
(``state_dict`` → ``load_state_dict``, which Lightning does for loaders that implement both)
gets exactly the batches it would have seen.

Lightning integration (2.6):

* ``loader.sampler.set_epoch(epoch)`` is called by the fit loop before each epoch (and it may call
  ``iter(loader)`` *before* that), so the epoch is read when the first batch is drawn, not when
  the iterator is created;
* Lightning only injects a ``DistributedSampler`` into ``torch.utils.data.DataLoader``; these
  loaders shard themselves: the datamodule passes ``trainer.global_rank`` and
  ``trainer.world_size``;
* ``sampling`` — ``"instance"`` (a shuffle), ``"class_balanced"`` or ``"class_aware"`` (set by
  the datamodule, or by deferred re-sampling from its epoch on; ``class_balanced = True`` is
  ``"class_balanced"``) — makes each following epoch a re-sampled epoch of the same length, also
  sharded across ranks;
* a batch is handed out before it is trained on, so after an exception inside a step (or a
  Ctrl-C) the loader has yielded one batch more than the step counter holds, and Lightning runs
  that batch again on resume. ``progress`` — set by the datamodule to Lightning's count of the
  epoch's processed batches — makes ``state_dict`` record the batches actually trained on.
"""

import hashlib
import math
import struct
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from ltlight.checks import check_choice, check_integer, check_range

#: Independent random streams derived from the one user seed: the epoch's order; per batch the
#: device loader's crop and flip; per sample the file loader's crop and flip; per batch its jitter.
ORDER_STREAM, AUGMENT_STREAM, SAMPLE_STREAM, JITTER_STREAM = 1, 2, 3, 4

#: A training epoch's order (:class:`EpochSampler`): a shuffle, or one of two re-samplings.
SAMPLING_MODES = ("instance", "class_balanced", "class_aware")
#: Class-aware sampling's images per class pick (``num_samples_cls`` of DB-loss's sampler).
CLASS_AWARE_IMAGES_PER_PICK = 3


def derive_seed(*values: int) -> int:
    """A 63-bit seed from integers, identical on every platform and Python run (unlike ``hash``)."""
    packed = struct.pack(f"<{len(values)}q", *values)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little") >> 1


class EpochSampler:
    """The sample indices one rank visits in one epoch; Lightning calls :meth:`set_epoch`.

    Orders of the ``N`` images, by :attr:`sampling`:

    * ``"instance"``: ``torch.randperm(N)`` from ``(seed, epoch)``;
    * ``"class_balanced"``: ``N`` draws, each a uniformly random class then a uniformly random
      image of it (with replacement, as the class-balanced sampler of the LDAM-DRW code);
    * ``"class_aware"``: DB-loss's ``ClassAwareSampler`` (Wu et al., ECCV 2020; Shen et al.,
      ECCV 2016): the classes in random cycles (each class once per cycle, a new order every
      cycle); each class pick takes the next :data:`CLASS_AWARE_IMAGES_PER_PICK` images of that
      class's own random cycle over its images, until ``N`` images. Deviations from the official
      code, which reseeds nothing and runs ``max_c n_c · C / 4`` draws: the cycles start afresh
      every epoch from ``(seed, epoch)`` (so an epoch is a pure function of them), and an epoch
      keeps ``N`` draws, as in the other modes (deferred re-sampling switches modes mid-run).

    A multi-label image belongs to every class present in it (``target == 1``; uncertain
    entries make no member). Without shuffling (evaluation) the order is ``0 … N−1`` whatever the
    mode. Rank ``r`` takes positions ``r, r + world_size, …``. For training (``pad``) the order is
    first padded by repeating its start to a multiple of ``world_size`` — exactly
    ``torch.utils.data.DistributedSampler`` — so every rank takes as many optimiser steps, as DDP
    needs. For evaluation it is not: the shards may differ by one image, and every image is
    counted exactly once (Lightning's logging and torchmetrics sum over ranks whatever the
    number of batches each had).

    Args:
        labels: ``(N,)`` class indices, or multi-label ``(N, C)`` float targets (any device;
            kept on the CPU here).
        shuffle: draw a new order every epoch; ``False`` for evaluation.
        seed: the user seed.
        rank: this process's global rank in ``[0, world_size)``.
        world_size: number of processes, ≥ 1.
        pad: equal shards by repetition; ``None``: when shuffling (training), not otherwise.
        sampling: the training order, one of :data:`SAMPLING_MODES` (settable later).
    """

    def __init__(
        self,
        labels: Tensor,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool | None = None,
        sampling: str = "instance",
    ) -> None:
        check_range("world_size", world_size, 1)
        check_range("rank", rank, 0, world_size, high_open=True)
        if len(labels) == 0:
            raise ValueError("the split is empty: a loader needs at least one image")
        labels = labels.detach().to("cpu")
        self.labels = labels if labels.dim() == 2 else labels.to(torch.int64)
        self.members, self.member_counts = class_members(self.labels)
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.sampling = sampling
        self.pad = shuffle if pad is None else pad
        n = len(self.labels)
        if not self.pad and n < world_size:
            # a process without a batch would skip the evaluation loop (and its collectives)
            raise ValueError(
                f"the split has {n} image(s) for world_size={world_size} processes: unpadded "
                "(evaluation) shards need at least one image per process"
            )
        # padded: ceil(N / W) each; unpadded: the positions r, r + W, ... below N
        self.num_samples = math.ceil((n if self.pad else n - rank) / world_size)

    @property
    def sampling(self) -> str:
        """The training order from the next epoch on, one of :data:`SAMPLING_MODES`."""
        return self._sampling

    @sampling.setter
    def sampling(self, value: str) -> None:
        self._sampling = check_choice("sampling", value, SAMPLING_MODES)

    @property
    def class_balanced(self) -> bool:
        """Whether epochs are re-sampled; setting ``True`` chooses ``"class_balanced"``."""
        return self.sampling != "instance"

    @class_balanced.setter
    def class_balanced(self, value: bool) -> None:
        self.sampling = "class_balanced" if value else "instance"

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Batches of ``batch_size`` in this rank's epoch (the last one short unless dropped)."""
        if drop_last:
            return self.num_samples // batch_size
        return math.ceil(self.num_samples / batch_size)

    def seed_for(self, stream: int, epoch: int, position: int) -> int:
        """The seed of ``stream``'s random numbers at ``position`` (a batch or a sample index) of
        this rank's ``epoch``: the same on resume, whatever the number of workers."""
        return derive_seed(self.seed, stream, epoch, self.rank, position)

    def global_order(self, epoch: int | None = None) -> Tensor:
        """This epoch's order over all ranks (before padding), int64 on the CPU."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, ORDER_STREAM, epoch))
        if self.sampling == "instance":
            return torch.randperm(n, generator=generator)
        if self.sampling == "class_aware":
            return class_aware_draw(self.members, self.member_counts, n, generator)[0]
        counts = self.member_counts
        present = counts.nonzero().flatten()
        class_start = torch.cumsum(counts, 0) - counts
        classes = present[torch.randint(len(present), (n,), generator=generator)]
        offsets = (torch.rand(n, generator=generator, dtype=torch.float64) * counts[classes]).long()
        return self.members[class_start[classes] + offsets]

    def indices(self, epoch: int | None = None) -> Tensor:
        """This rank's indices for the epoch: a disjoint shard of the (padded) global order."""
        order = self.global_order(epoch)
        if not self.pad:
            return order[self.rank :: self.world_size]
        total = self.num_samples * self.world_size
        if total > len(order):  # pad like DistributedSampler, so every rank has as many batches
            repeats = math.ceil(total / len(order))
            order = torch.cat([order, order.repeat(repeats)[: total - len(order)]])
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


def class_members(labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(members, counts)``: the images of every class, class after class (stable order), and
    how many each class has. ``labels``: ``(N,)`` indices or ``(N, C)`` multi-label targets."""
    if labels.dim() == 2:
        images, classes = (labels == 1).nonzero(as_tuple=True)
        num_classes = labels.shape[1]
    else:  # a negative label is unknown (new images to predict): in no class
        images = torch.arange(len(labels))[labels >= 0]
        classes = labels[images]
        num_classes = int(classes.max()) + 1 if len(classes) else 0
    by_class = torch.sort(classes, stable=True).indices
    return images[by_class], torch.bincount(classes, minlength=num_classes)


def class_aware_draw(
    members: Tensor, counts: Tensor, n: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``(images, classes)``: ``n`` class-aware draws and the class each was drawn for.

    Classes come in random cycles over the classes with an image; each pick takes
    :data:`CLASS_AWARE_IMAGES_PER_PICK` consecutive draws from that class's random cycles over its
    members (``members`` / ``counts`` as :func:`class_members` gives them). One pass of tensor
    operations: every (class, cycle) permutation is a sort of random keys within its group.
    """
    per_pick = CLASS_AWARE_IMAGES_PER_PICK
    present = counts.nonzero().flatten()
    picks = math.ceil(n / per_pick)
    cycles = math.ceil(picks / len(present))
    cycle_orders = torch.rand(cycles, len(present), generator=generator).argsort(dim=1)
    picked = present[cycle_orders].flatten()[:picks]
    classes = picked.repeat_interleave(per_pick)[:n]
    # the k-th draw of class c (k in draw order) is entry k of c's concatenated cycles
    by_class = torch.sort(classes, stable=True).indices
    needed = torch.bincount(classes, minlength=len(counts))
    rank_in_class = torch.empty(n, dtype=torch.int64)
    first_of_class = torch.cumsum(needed, 0) - needed
    rank_in_class[by_class] = torch.arange(n) - first_of_class[classes[by_class]]
    # every class's cycles over its members: ceil(needed / count) permutations, back to back
    block = (needed + counts - 1) // counts.clamp(min=1) * counts
    block_start = torch.cumsum(block, 0) - block
    entry_class = torch.repeat_interleave(torch.arange(len(counts)), block)
    position = torch.arange(int(block.sum())) - block_start[entry_class]
    size = counts[entry_class]
    member = (torch.cumsum(counts, 0) - counts)[entry_class] + position % size
    cycle_start = block_start[entry_class] + position // size * size
    order = torch.rand(len(member), generator=generator).argsort()
    order = order[torch.sort(cycle_start[order], stable=True).indices]
    return members[member[order][block_start[classes] + rank_in_class]], classes


class ResumableEpochLoader:
    """What both loaders share: an :class:`EpochSampler`, the batch size, the position inside the
    epoch.

    A subclass calls this constructor with its sampler, starts each ``__iter__`` with
    ``epoch, start = self._begin_epoch()``, sets ``_batches_yielded`` as it yields, and so gets
    ``len()``, ``class_balanced``, ``state_dict`` / ``load_state_dict`` and ``progress``.

    Args:
        sampler: this rank's epochs.
        batch_size: images per batch, ≥ 1.
        drop_last: drop this rank's last incomplete batch.
    """

    def __init__(self, sampler: EpochSampler, batch_size: int, drop_last: bool = False) -> None:
        self.sampler = sampler
        self.batch_size = check_integer("batch_size", batch_size, 1)
        self.drop_last = drop_last
        # DataLoader's attribute; Lightning reads it (with `sampler`) to tell shuffled loaders.
        self.batch_sampler = None
        # Position inside the current epoch, for state_dict(); _resume is a loaded, unused state.
        self._epoch = 0
        self._batches_yielded = 0
        self._resume: tuple[int, int] | None = None
        #: How many of this epoch's batches the consumer has finished (set by the datamodule).
        self.progress: Callable[[], int] | None = None

    def __len__(self) -> int:
        return self.sampler.num_batches(self.batch_size, self.drop_last)

    @property
    def class_balanced(self) -> bool:
        """Draw each epoch class-balanced (deferred re-sampling); takes effect at the next epoch."""
        return self.sampler.class_balanced

    @class_balanced.setter
    def class_balanced(self, value: bool) -> None:
        self.sampler.class_balanced = bool(value)

    def _begin_epoch(self) -> tuple[int, int]:
        """``(epoch, first batch index)``: a loaded state skips its batches once, in its epoch.

        Call it when the first batch is requested (a generator's body), after Lightning has
        called ``set_epoch`` / ``load_state_dict`` — it may call ``iter()`` before either.
        """
        epoch = self.sampler.epoch
        start = 0
        if self._resume is not None:
            resume_epoch, resume_batches = self._resume
            self._resume = None
            if resume_epoch == epoch:
                start = resume_batches
        self._epoch, self._batches_yielded = epoch, start
        return epoch, start

    def state_dict(self) -> dict[str, Any]:
        """Where this rank is: ``{"epoch", "batches_yielded", "class_balanced"}``, and
        ``"sampling"`` when that flag does not say it all (``"class_aware"``).

        ``batches_yielded`` counts the batches handed out, or with ``progress`` those finished:
        a batch yielded but not trained on when the state is saved is yielded again on resume.
        """
        batches = self._batches_yielded
        if self.progress is not None:
            batches = min(batches, int(self.progress()))
        state = {"epoch": self._epoch, "batches_yielded": batches}
        state["class_balanced"] = self.class_balanced
        if self.sampler.sampling == "class_aware":
            state["sampling"] = self.sampler.sampling
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the next iteration of epoch ``state_dict["epoch"]`` skip the batches already seen.

        The skip applies once, and only if the sampler's epoch is that epoch when the first batch
        is drawn (a state saved at the end of an epoch leaves the next epoch untouched).
        """
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches_yielded"])
        self._resume = (epoch, batches)
        self._epoch, self._batches_yielded = epoch, batches
        if "sampling" in state_dict:
            self.sampler.sampling = state_dict["sampling"]
        elif "class_balanced" in state_dict:
            self.class_balanced = state_dict["class_balanced"]
