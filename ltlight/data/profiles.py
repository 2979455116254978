"""Long-tail profiles: how many training images each class keeps, and which ones.

The counts follow the official LDAM-DRW code (Cao et al., NeurIPS 2019, ``get_img_num_per_cls``),
which is how CIFAR-10-LT / CIFAR-100-LT are built in the papers:

* ``"exp"``: ``n_i = int(max_count · (1 / ρ)^(i / (C − 1)))`` for class ``i`` of ``C``, ``ρ`` the
  imbalance ratio (the paper's ``ρ = n_max / n_min``; the code's ``imb_factor = 1 / ρ``);
* ``"step"``: the first ``int(C · step_fraction)`` classes keep ``max_count``, the others
  ``int(max_count · (1 / ρ))`` (the paper's ``μ`` is ``step_fraction``, 0.5 there).

Which images a class keeps is where the official code is not reproducible (an unseeded NumPy
shuffle in many forks): :func:`long_tail_indices` takes, per class, the first ``n_c`` images of one
permutation drawn from ``torch.Generator().manual_seed(seed)`` on the CPU, so the same seed gives
the same subset on any machine, and every seed gives the same counts.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from ltlight.checks import check_choice, check_integer, check_range

PROFILES = ("exp", "step")


def check_imbalance_ratio(imbalance_ratio: float) -> None:
    """Raise ``ValueError`` unless ``imbalance_ratio`` (``ρ = n_max / n_min``; 1: balanced) ≥ 1."""
    check_range("imbalance_ratio", imbalance_ratio, 1)


def check_profile(profile: str, step_fraction: float) -> None:
    """Raise ``ValueError`` for an unknown ``profile`` or a ``step_fraction`` (the share of head
    classes) outside (0, 1)."""
    check_choice("profile", profile, PROFILES)
    check_range("step_fraction", step_fraction, 0, 1, low_open=True, high_open=True)


def long_tail_counts(
    max_count: int,
    num_classes: int,
    imbalance_ratio: float,
    profile: str = "exp",
    step_fraction: float = 0.5,
) -> list[int]:
    """Training images per class of a long-tailed split, head class first.

    Args:
        max_count: images of the most frequent class (``n_max``; 5000 for CIFAR-10), ≥ 1.
        num_classes: ``C``, ≥ 2.
        imbalance_ratio: ``ρ = n_max / n_min`` ≥ 1 (10, 50, 100, 200 in the papers).
        profile: ``"exp"`` (exponential decay) or ``"step"`` (two levels).
        step_fraction: for ``"step"``, the fraction ``μ`` of classes at ``max_count``, in (0, 1).

    Returns:
        ``C`` positive integers, exactly as the official ``get_img_num_per_cls`` computes them
        (``long_tail_counts(5000, 10, 100)`` is ``[5000, 2997, 1796, 1077, 645, 387, 232, 139,
        83, 50]``).

    Raises:
        ValueError: an argument outside its range, or a ratio so large that a class would keep
            no image (``int(max_count / ρ) == 0``).
    """
    max_count = check_integer("max_count", max_count, 1)
    num_classes = check_integer("num_classes", num_classes, 2)
    check_imbalance_ratio(imbalance_ratio)
    check_profile(profile, step_fraction)

    imb_factor = 1.0 / imbalance_ratio  # the official code's parameter, kept for identical floats
    if profile == "exp":
        counts = [
            int(max_count * imb_factor ** (i / (num_classes - 1.0))) for i in range(num_classes)
        ]
    else:
        num_head = int(num_classes * step_fraction)
        if num_head < 1:
            raise ValueError(
                f"step_fraction must be >= 1/num_classes = {1 / num_classes:g} so that the step "
                f"profile keeps a head class, got {step_fraction} (int({num_classes} × "
                f"{step_fraction}) = 0 head classes)"
            )
        counts = [max_count] * num_head + [int(max_count * imb_factor)] * (num_classes - num_head)
    if min(counts) < 1:
        raise ValueError(
            f"imbalance_ratio must be <= max_count ({max_count}) so that every class keeps at "
            f"least one image, got {imbalance_ratio} (counts would be {counts})"
        )
    return counts


def long_tail_indices(
    labels: Tensor | Sequence[int], class_counts: Sequence[int], seed: int = 0
) -> Tensor:
    """Indices of a seeded long-tailed subset: per class, the first ``n_c`` of one permutation.

    Args:
        labels: class index of every image in the balanced pool, shape ``(N,)``.
        class_counts: images to keep per class, ``class_counts[c] <= (labels == c).sum()``.
        seed: seeds ``torch.Generator().manual_seed(seed)``; the permutation is drawn on the CPU,
            so the subset does not depend on the machine or the training device.

    Returns:
        Sorted int64 indices into ``labels`` (CPU), ``sum(class_counts)`` of them.
    """
    counts = torch.as_tensor(list(class_counts), dtype=torch.int64)
    labels = _checked_labels(labels, len(counts))
    if bool((counts < 0).any()):
        raise ValueError(f"class_counts must be non-negative, got {counts.tolist()}")
    available = torch.bincount(labels, minlength=len(counts))
    short = (counts > available).nonzero().flatten().tolist()
    if short:
        c = short[0]
        raise ValueError(
            f"class_counts[{c}] = {int(counts[c])} but the pool has only {int(available[c])} "
            f"images of class {c}"
        )

    return _first_per_class(labels, counts, available, seed)


def _checked_labels(labels: Tensor | Sequence[int], num_classes: int | None) -> Tensor:
    """``labels`` as 1-D int64 on the CPU, in ``[0, num_classes)`` (``None``: any ≥ 0)."""
    labels = torch.as_tensor(labels).to(device="cpu", dtype=torch.int64)
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    if labels.numel():
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            allowed = f"[0, {num_classes})" if num_classes is not None else ">= 0"
            raise ValueError(f"labels must be in {allowed}, got values in [{low}, {high}]")
    return labels


def _first_per_class(labels: Tensor, counts: Tensor, available: Tensor, seed: int) -> Tensor:
    """Sorted indices of the first ``counts[c]`` images of class ``c`` in a seeded permutation."""
    permutation = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    permuted_labels = labels[permutation]
    # Stable sort by class keeps the permutation's order inside each class.
    by_class = torch.sort(permuted_labels, stable=True).indices
    class_start = torch.cumsum(available, 0) - available
    sorted_labels = permuted_labels[by_class]
    rank_in_class = torch.arange(len(labels)) - class_start[sorted_labels]
    keep = rank_in_class < counts[sorted_labels]
    return torch.sort(permutation[by_class[keep]]).values


#: Added to the user seed for the validation draw, so it is independent of the long-tailed subset.
VALIDATION_SEED_OFFSET = 7919


def validation_indices(
    labels: Tensor | Sequence[int],
    per_class: int,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> tuple[Tensor, Tensor]:
    """Split a labelled pool into a balanced, seeded validation set and the rest.

    ``per_class`` images of every class (the first of one permutation seeded with
    ``seed + VALIDATION_SEED_OFFSET`` on the CPU) form the validation set; the rest stays for
    training. Carve it from the balanced pool *before* drawing a long-tailed subset, as
    ImageNet-LT's validation set (20 per class, disjoint from train) was built.

    Args:
        labels: class index of every image of the pool, shape ``(N,)``, in ``[0, C)`` with ``C``
            the largest label + 1 (or ``len(class_names)``).
        per_class: validation images per class, ≥ 0; every class must keep at least one image
            for training (``per_class < images of the class``).
        seed: seeds the draw.
        class_names: names for error messages; ``C = len(class_names)`` when given.

    Returns:
        ``(train_indices, val_indices)``: sorted int64 CPU indices into ``labels``, disjoint,
        together covering the pool; ``val_indices`` holds exactly ``per_class`` of each class.

    Raises:
        ValueError: ``per_class`` not an integer ≥ 0, or a class with ``<= per_class`` images
            (the message names the class and its count).

    Example:
        >>> train, val = validation_indices([0, 0, 0, 1, 1, 1], per_class=1, seed=0)
        >>> len(train), len(val)
        (4, 2)
    """
    per_class = check_integer("val_per_class", per_class, 0)
    labels = _checked_labels(labels, len(class_names) if class_names is not None else None)
    num_classes = len(class_names) if class_names is not None else int(labels.max()) + 1
    all_indices = torch.arange(len(labels))
    if per_class == 0:
        return all_indices, all_indices[:0]
    available = torch.bincount(labels, minlength=num_classes)
    short = (available <= per_class).nonzero().flatten().tolist()
    if short:
        c = short[0]
        name = f"{class_names[c]!r} ({c})" if class_names is not None else str(c)
        raise ValueError(
            f"val_per_class = {per_class} leaves no training image of class {name}: it has "
            f"{int(available[c])} images; val_per_class must be < {int(available[c])} "
            f"({len(short)} class(es) too small)"
        )
    counts = torch.full((num_classes,), per_class, dtype=torch.int64)
    val = _first_per_class(labels, counts, available, seed + VALIDATION_SEED_OFFSET)
    in_val = torch.zeros(len(labels), dtype=torch.bool)
    in_val[val] = True
    return all_indices[~in_val], val


def validation_fraction_indices(
    num_images: int, fraction: float, seed: int = 0, groups: Sequence[str] | None = None
) -> tuple[Tensor, Tensor]:
    """Split ``num_images`` images into a seeded random validation set and the rest, per image.

    What multi-label data carves (a per-class balance does not exist when an image has several
    classes): ``round(fraction · N)`` images, the first of one permutation seeded with
    ``seed + VALIDATION_SEED_OFFSET``. With ``groups`` (one id per image, e.g. ChestX-ray14's
    patient) whole groups are drawn in a seeded order until the validation set holds at least
    that many images, so no group is on both sides.

    Returns:
        ``(train_indices, val_indices)``: sorted, disjoint int64 CPU indices covering the images.

    Example:
        >>> train, val = validation_fraction_indices(10, 0.2, seed=0)
        >>> len(train), len(val)
        (8, 2)
    """
    check_range("val_fraction", fraction, 0, 1, high_open=True)
    generator = torch.Generator().manual_seed(seed + VALIDATION_SEED_OFFSET)
    target = round(fraction * num_images)
    in_val = torch.zeros(num_images, dtype=torch.bool)
    if groups is None:
        in_val[torch.randperm(num_images, generator=generator)[:target]] = True
    else:
        names = sorted(set(groups))
        group_of = {name: i for i, name in enumerate(names)}
        group_index = torch.tensor([group_of[g] for g in groups], dtype=torch.int64)
        sizes = torch.bincount(group_index, minlength=len(names))
        order = torch.randperm(len(names), generator=generator)
        taken = order[: int((torch.cumsum(sizes[order], 0) < target).sum()) + 1] if target else []
        chosen = torch.zeros(len(names), dtype=torch.bool)
        chosen[taken] = True
        in_val = chosen[group_index]
    if target and bool(in_val.all()):
        raise ValueError(f"val_fraction = {fraction} leaves no training image")
    all_indices = torch.arange(num_images)
    return all_indices[~in_val], all_indices[in_val]
