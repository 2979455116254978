"""Composed configs: ``--config configs/<dataset>/<method>.yaml`` names a dataset and a method.

Each dataset and each method is written once::

    configs/<dataset>/dataset.yaml      the dataset's whole recipe: trainer (length, logger,
                                        callbacks), data, model (backbone, optimiser, schedule)
    configs/<dataset>/validation.yaml   its validation split, for the methods that need one
    configs/<dataset>/<method>.yaml     optional: the dataset's adjustment of one method
    configs/methods/<method>.yaml       what a method changes (loss, callbacks, head, ...)
    configs/methods/validation/<method>.yaml    the same, for a method that needs a validation
                                        split (post-hoc calibration, decoupled training)
    configs/methods/multilabel/<method>.yaml    the same, for a multi-label method (sigmoid
                                        losses on (N, C) targets, class-aware sampling)

When ``configs/<dataset>/dataset.yaml`` exists, the path ``configs/<dataset>/<method>.yaml``
given to ``--config`` — whether or not an adjustment file of that name exists — stands for the
files ``dataset.yaml``, the method's, ``validation.yaml`` for a method of ``methods/validation/``
and the adjustment, in this order: jsonargparse applies them one after the other (a later value
replaces an earlier one; the ``init_args`` of a class given earlier, and of a list item of the
same class, are merged). :func:`compose_arguments` rewrites the command line so before
LightningCLI parses it; the run is still named by the path as given (``runs/<dataset>/<method>``).
Any other config file — a run's saved ``config.yaml``, a user's own — is used as it is.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DATASET = "dataset.yaml"
VALIDATION = "validation.yaml"
METHODS = "methods"
MULTILABEL = "multilabel"
CONFIG_OPTIONS = ("--config", "-c")


@dataclass(frozen=True)
class Composition:
    """A command line with every composed ``--config`` expanded into its files."""

    #: The arguments to parse.
    args: list[str]
    #: The ``--config`` values as given (the last one names the run).
    config_files: list[str]


def composed_files(config: str | os.PathLike) -> list[Path] | None:
    """The config files that ``config`` stands for, in the order they apply; ``None`` when it is
    not a ``configs/<dataset>/<method>.yaml`` of a dataset folder (then it is used as it is).

    Raises:
        ValueError: the dataset folder has no such method (the message lists its methods).
    """
    path = Path(config)
    folder = path.parent
    if path.suffix != ".yaml" or path.name in (DATASET, VALIDATION):
        return None
    if not (folder / DATASET).is_file():
        return None
    methods = folder.parent / METHODS
    method = path.stem
    for protocol in (methods, methods / "validation", methods / MULTILABEL):
        if (protocol / f"{method}.yaml").is_file():
            break
    else:
        known = ", ".join(available_methods(methods)) or f"none in {methods}"
        multi_label = ", ".join(available_methods(methods, multi_label=True))
        raise ValueError(
            f"config: {path} names the method {method!r} of {folder.name}, which does not "
            f"exist; the methods are: {known}"
            + (f"; for multi-label data: {multi_label}" if multi_label else "")
        )
    files = [folder / DATASET, protocol / f"{method}.yaml"]
    if protocol.name == "validation" and (folder / VALIDATION).is_file():
        files.append(folder / VALIDATION)
    if path.is_file():
        files.append(path)  # the dataset's adjustment of the method, applied last
    return files


def available_methods(methods: Path, multi_label: bool = False) -> list[str]:
    """The method names of a ``configs/methods`` folder, sorted: the single-label ones (both
    protocols), or with ``multi_label`` those of ``methods/multilabel/``."""
    if multi_label:
        files = list((methods / MULTILABEL).glob("*.yaml"))
    else:
        files = [*methods.glob("*.yaml"), *(methods / "validation").glob("*.yaml")]
    return sorted(path.stem for path in files)


def compose_arguments(args: Sequence[str]) -> Composition:
    """``args`` with each ``--config``/``-c`` value that names a dataset and a method replaced
    by one ``--config`` per file it stands for (:func:`composed_files`)."""
    composed: list[str] = []
    given: list[str] = []
    args = list(args)
    index = 0
    while index < len(args):
        option, value, index = _config_option(args, index)
        if value is None:
            composed.append(option)
            continue
        given.append(value)
        files = composed_files(value)
        for file in files if files is not None else [value]:
            composed += ["--config", str(file)]
    return Composition(composed, given)


def _config_option(args: list[str], index: int) -> tuple[str, str | None, int]:
    """``(argument, config value or None, next index)`` for the argument at ``index``."""
    argument = args[index]
    if argument in CONFIG_OPTIONS and index + 1 < len(args):
        return argument, args[index + 1], index + 2
    for option in CONFIG_OPTIONS:
        if argument.startswith(option + "="):
            return argument, argument[len(option) + 1 :], index + 1
    return argument, None, index + 1
