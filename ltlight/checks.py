"""Argument checks, written once: every constructor validates its input with these.

Each raises a ``ValueError`` whose message names the argument, the value received and what is
allowed — ``"gamma must be in [0, 1], got 1.5"``, ``"batch_size must be an integer >= 1, got
0"`` — as ``timm/loss/class_weights.py`` does. They run at the boundary (``__init__``,
``setup``), never in a training step.
"""

import math
import numbers
from collections.abc import Collection, Sequence
from typing import Any

import torch
from torch import Tensor


def check_range(
    name: str,
    value: float,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it lies in the interval, else raise a ``ValueError``.

    The message names the argument, the value received and the allowed range, e.g.
    ``"gamma must be in [0, 1], got 1.5"``; NaN is never in range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    above = value > low if low_open else value >= low
    below = value < high if high_open or high == math.inf else value <= high
    if not (above and below):
        if high == math.inf:
            allowed = f"{'>' if low_open else '>='} {low:g}"
        else:
            allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return float(value)


def check_integer(
    name: str,
    value: Any,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    optional: bool = False,
) -> int | None:
    """Return ``value`` as an ``int`` if it is a whole number in ``[minimum, maximum]``.

    ``True``/``False`` are not integers here, nor is ``2.5``; ``2.0`` (what YAML or a float
    computation may give) is 2. With ``optional``, ``None`` passes through.
    """
    if value is None and optional:
        return None
    whole = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and int(value) == value
    )
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum}")
    if maximum is not None:
        bounds.append(f"<= {maximum}")
    allowed = "an integer" + (f" {' and '.join(bounds)}" if bounds else "")
    allowed += " or None" if optional else ""
    if (
        not whole
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_class_counts(class_counts: Sequence[int] | Tensor) -> Tensor:
    """Return ``class_counts`` as a 1-D int64 tensor; raise ``ValueError`` saying what is wrong."""
    try:
        counts = torch.as_tensor(class_counts)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"class_counts must be a 1-D sequence of positive integers, got {class_counts!r}"
        ) from error
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(
            f"class_counts must be a non-empty 1-D sequence of positive integers, "
            f"got shape {tuple(counts.shape)}"
        )
    if counts.is_complex() or counts.dtype == torch.bool:
        raise ValueError(f"class_counts must be integers, got dtype {counts.dtype}")
    if counts.is_floating_point() and not bool(
        torch.all(torch.isfinite(counts) & (counts == counts.round()))
    ):
        raise ValueError(f"class_counts must be integers, got {counts.tolist()}")
    counts = counts.to(torch.int64)
    if bool(torch.any(counts < 1)):
        bad = [(i, int(c)) for i, c in enumerate(counts.tolist()) if c < 1]
        raise ValueError(
            f"class_counts must be positive integers (>= 1), got {bad[:5]} as (class, count); "
            "an empty class cannot be re-balanced: drop it or give it at least one sample"
        )
    return counts
