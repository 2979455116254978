"""Epoch arguments of a schedule: an epoch, or a fraction of the run resolved from max_epochs.

An epoch argument is either an epoch (an ``int``, counting from 0) or a fraction of the run (a
``float`` in [0, 1], resolved as ``floor(fraction · trainer.max_epochs)`` when training starts),
so a config says the run's length once and ``--trainer.max_epochs`` moves the whole schedule: the
learning-rate milestones (:class:`~ltlight.optim.WarmupMultiStepLR`) and the DRW / DRS / γ
switches (:mod:`ltlight.callbacks`). A switch at or after the end of training is an error.
"""

import math
import numbers

#: An epoch (int) or a fraction of ``trainer.max_epochs`` (float in [0, 1]).
Epoch = int | float


def check_epoch(
    name: str, value: Epoch, minimum: Epoch = 0, minimum_name: str | None = None
) -> None:
    """Raise ``ValueError`` unless ``value`` is an epoch ``>= minimum`` or a fraction in [0, 1].

    ``minimum`` is compared only when it is given in the same kind (both epochs or both
    fractions); mixed kinds are compared once resolved, by :func:`resolve_epoch`'s callers.
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float)):
        raise ValueError(
            f"{name} must be an integer epoch or a fraction of the run in [0, 1], got {value!r}"
        )
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} as a fraction of the run must be in [0, 1], got {value!r}")
    if isinstance(value, numbers.Integral) and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    if isinstance(value, float) == isinstance(minimum, float) and value < minimum:
        bound = f"{minimum_name} ({minimum})" if minimum_name else str(minimum)
        raise ValueError(f"{name} must be >= {bound}, got {value!r}")


def resolve_epoch(name: str, value: Epoch, max_epochs: int | None) -> int:
    """``value`` as an epoch: ``floor(fraction · max_epochs)``, an integer as it is.

    Rounded down, so a fraction below 1 always lies inside the run (a one-epoch smoke run of a
    DRW config re-weights from epoch 0); the 1e-9 keeps ``0.29 · 100`` at 29.
    """
    if not isinstance(value, float):
        return int(value)
    if max_epochs is None or max_epochs < 0:
        raise ValueError(
            f"{name}={value} is a fraction of the run, but the trainer has no max_epochs "
            f"(got {max_epochs}): set trainer.max_epochs or give {name} as an integer epoch"
        )
    return math.floor(value * max_epochs + 1e-9)


def check_before_end(owner: str, name: str, value: Epoch, epoch: int, max_epochs: int | None):
    """Raise ``ValueError`` if ``epoch`` (``value`` resolved) is not inside the run."""
    if max_epochs is None or max_epochs < 0 or epoch < max_epochs:
        return
    given = (
        f"{value} of max_epochs={max_epochs} = epoch {epoch}" if isinstance(value, float) else epoch
    )
    raise ValueError(
        f"{owner} {name}={given} is at or after the end of training (max_epochs={max_epochs}, "
        f"last epoch {max_epochs - 1}): it would never take effect. Give {name} as a fraction of "
        f"the run (e.g. 0.8) or raise trainer.max_epochs"
    )
