"""One folder per run: where ``ltlight`` writes a run, and how ``--ckpt_path last`` finds it again.

A run of ``ltlight fit --config configs/<dataset>/<method>.yaml`` writes everything it makes to
``runs/<dataset>/<method>/<run name>/`` (the run name is ``--run_name``, by default the start
time)::

    config.yaml                the resolved configuration (``<stage>_config.yaml`` for
                               ``validate``/``test``/``predict`` of the run's checkpoints)
    checkpoints/last.ckpt      the last finished epoch (and a best one when a config selects on a
                               validation split)
    interrupted.ckpt           written when SIGTERM or Ctrl-C stops training; removed once a fit
                               that resumed from it has finished
    predictions-last.csv       ``ltlight predict --ckpt_path .../last.ckpt`` (one file per
                               checkpoint, named after it; ``predict_config-last.yaml`` beside)
    wandb/, lightning_logs/    the loggers' files and figures

A new run never continues an old one by itself, nor writes into one: ``--run_name`` or
``--run_dir`` naming a folder that holds a run is refused. ``--ckpt_path last`` continues *this*
run: the newest intact checkpoint of the newest run of the same dataset and method whose saved
``config.yaml`` has the same model (backbone, loss, optimiser, schedule, method callbacks) and
data arguments. A command that trains into a folder holds its ``.lock`` (an advisory
``fcntl.flock``, released by the system when the process ends, however it ends): a second
``--ckpt_path last`` of the same run is refused while the first runs.

Under DDP every rank writes into rank 0's folder, and only rank 0 creates one: the folder is
chosen while the command line is parsed, before the processes can talk, so another rank knows
only a provisional name (a timed name is rank 0's clock, not its own) until set-up, when
:class:`RankZeroRunFolder` gives it rank 0's.
"""

import fcntl
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from ltlight._lightning_internals import set_default_root_dir
from ltlight.checkpoints import check_checkpoint_file

RUNS_ROOT = "runs"
RUN_CONFIG = "config.yaml"
INTERRUPTED = "interrupted.ckpt"
CHECKPOINTS = "checkpoints"
#: Held (``fcntl.flock``) by the command that trains into the folder, for its whole life.
RUN_LOCK = ".lock"

#: Arguments that change how a run is computed or reported, not what it learns or evaluates on:
#: a checkpoint made with other values still belongs to the same run.
NOT_IDENTITY = frozenset(
    {
        "compile",
        "channels_last",
        "many_shot_threshold",
        "few_shot_threshold",
        "ece_bins",
        "eval_batch_size",
        "num_workers",
        "data_dir",
        "download",
        "pin_memory",
        "predict",  # the new images `ltlight predict` runs on
    }
)


def run_identity(config_files: Sequence[str | os.PathLike], fallback: tuple[str, str]) -> tuple:
    """``(dataset, method)`` of a run: the last config file's folder and name.

    ``configs/digits_lt/ldam_drw.yaml`` → ``("digits_lt", "ldam_drw")``; without a config file,
    ``fallback`` (the datamodule's and the loss's class names).
    """
    if config_files:
        path = Path(os.fspath(config_files[-1])).resolve()
        return path.parent.name or fallback[0], path.stem
    return fallback


#: Where launchers tell a process its rank: torchrun (``RANK``, ``GROUP_RANK``), Lightning's own
#: launcher (``LOCAL_RANK``, ``NODE_RANK``), SLURM, LSF.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "SLURM_PROCID")
RANK_VARIABLES += ("JSM_NAMESPACE_RANK",)


def launched_as_rank_zero() -> bool:
    """Whether no launcher says that this process is another rank than the first: the process
    that creates the run folder (a lone process, or rank 0 of a job)."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def new_run_dir(method_dir: Path, name: str | None = None, create: bool = True) -> Path:
    """``method_dir/<name>``; without a name, the start time, made unique in ``method_dir``.

    The timed folder is created here (unless ``create`` is false: a DDP rank > 0's provisional
    name), atomically, so that runs started in the same second (a sweep launching its seeds at
    once) never share one: the second gets ``<time>-2``.
    """
    if name:
        if "/" in name or name in (".", ".."):
            raise ValueError(f"run_name must be a plain folder name, got {name!r}")
        return method_dir / name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if not create:
        return method_dir / stamp
    method_dir.mkdir(parents=True, exist_ok=True)
    for number in range(1, 10_000):
        candidate = method_dir / (stamp if number == 1 else f"{stamp}-{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free run folder name for {stamp} in {method_dir}")


def run_files(folder: Path) -> list[str]:
    """The files in ``folder`` that make it a run's (its config, its checkpoints)."""
    found = [folder / RUN_CONFIG, folder / INTERRUPTED, *sorted((folder / CHECKPOINTS).glob("*"))]
    return [str(path.relative_to(folder)) for path in found if path.is_file()]


def refuse_existing_run(folder: Path, argument: str) -> None:
    """A ``ValueError`` if ``folder`` holds a run: a new run never writes into another's."""
    found = run_files(folder)
    if found:
        raise ValueError(
            f"{argument}: {folder} already holds a run ({', '.join(found[:3])}): give another "
            "--run_name, or continue that run with --ckpt_path last (or --ckpt_path=<its "
            "checkpoint>)"
        )


#: The locks this process holds: open for its whole life, closed by the system at its end.
_HELD_LOCKS: dict[Path, int] = {}


def lock_run(folder: Path) -> None:
    """Hold ``folder/.lock`` for the life of this process, or a ``ValueError`` naming the
    process that holds it (the folder is created)."""
    folder = Path(folder).resolve()
    if folder in _HELD_LOCKS:
        return
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise ValueError(
            f"run_dir: {folder} is in use by another ltlight command (process {holder}): wait "
            "for it to end (or stop it), then run this one again"
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    _HELD_LOCKS[folder] = descriptor


def unlock_run(folder: Path) -> None:
    """Release this process's lock of ``folder`` (and remove the lock file)."""
    descriptor = _HELD_LOCKS.pop(Path(folder).resolve(), None)
    if descriptor is not None:
        (Path(folder) / RUN_LOCK).unlink(missing_ok=True)
        os.close(descriptor)


def discard_unstarted(run_dir: Path) -> None:
    """Remove a new run's folder whose start failed (set-up refused the data, a signal came):
    it holds no config and no checkpoint, only what the loggers began (a W&B run)."""
    unlock_run(run_dir)
    if run_dir.is_dir() and not run_files(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)


def discard_if_empty(run_dir: Path) -> None:
    """Remove ``run_dir`` if nothing was written into it (a start that failed on an argument):
    its empty sub-folders go too; a folder holding any file is left as it is."""
    unlock_run(run_dir)
    if not run_dir.is_dir() or any(path.is_file() for path in run_dir.rglob("*")):
        return
    for folder in sorted(run_dir.rglob("*"), key=lambda path: len(path.parts), reverse=True):
        folder.rmdir()
    run_dir.rmdir()


class RankZeroRunFolder(L.Callback):
    """Every rank takes rank 0's run folder at set-up, when the processes can first agree.

    Until then a rank > 0 has a provisional folder that it never creates: the trainer's
    ``default_root_dir`` and the ``dirpath`` of every callback pointed inside it (``ltlight``
    points the checkpoint callbacks there) move to the same place in rank 0's folder.

    Args:
        run_dir: this process's run folder, as chosen while parsing.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        agreed = Path(trainer.strategy.broadcast(str(self.run_dir), src=0))
        if agreed == self.run_dir:
            return
        set_default_root_dir(trainer, str(agreed))
        for callback in trainer.callbacks:
            dirpath = getattr(callback, "dirpath", None)
            if isinstance(dirpath, str) and Path(dirpath).is_relative_to(self.run_dir):
                callback.dirpath = str(agreed / Path(dirpath).relative_to(self.run_dir))
        self.run_dir = agreed


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints a run can continue from, newest first."""
    paths = [run_dir / INTERRUPTED, *sorted((run_dir / CHECKPOINTS).glob("last*.ckpt"))]
    existing = [path for path in paths if path.is_file()]
    return sorted(existing, key=lambda path: path.stat().st_mtime, reverse=True)


def run_dir_of_checkpoint(ckpt_path: str | os.PathLike) -> Path | None:
    """The run folder holding ``ckpt_path`` (its ``config.yaml`` beside it or one level up)."""
    path = Path(ckpt_path).resolve()
    for folder in (path.parent, path.parent.parent):
        if (folder / RUN_CONFIG).is_file():
            return folder
    return None


def flatten_class(config: Any) -> Any:
    """``{class_path, init_args}`` → ``{"_class_path": ..., **init_args}``: the shape Lightning
    stores a CLI-built module's (and datamodule's) hyper-parameters in, so both compare."""
    if isinstance(config, Mapping) and "class_path" in config:
        flat = {"_class_path": config["class_path"]}
        flat.update(config.get("init_args") or {})
        flat.update(config.get("dict_kwargs") or {})
        return flat
    return config


def config_differences(saved: Any, current: Any, prefix: str) -> list[str]:
    """Dotted names of the arguments that differ between two (nested) configs.

    Keys in :data:`NOT_IDENTITY` are left out; ``class_path``/``init_args`` nesting is ignored,
    so ``model.loss.max_m`` names LDAM's margin whichever way the config wrote it.
    """
    saved, current = flatten_class(saved), flatten_class(current)
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        differences = []
        for key in sorted(set(saved) | set(current), key=str):
            if key in NOT_IDENTITY or key == "_instantiator":
                continue
            name = "class_path" if key == "_class_path" else key
            differences += config_differences(saved.get(key), current.get(key), f"{prefix}.{name}")
        return differences
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        differences = []
        for index, (a, b) in enumerate(zip(saved, current, strict=True)):
            differences += config_differences(a, b, f"{prefix}[{index}]")
        return differences
    return [] if _same_value(saved, current) else [prefix]


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, tuple) or isinstance(b, tuple):
        return list(a) == list(b) if isinstance(a, (list, tuple)) else False
    return a == b


def identity_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Differences between two run configs in what defines a run: ``model`` and ``data``."""
    return config_differences(saved.get("model"), current.get("model"), "model") + (
        config_differences(saved.get("data"), current.get("data"), "data")
    )


def checkpoint_differences(checkpoint: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Differences between a checkpoint's recorded arguments and a run config's model and data.

    A module built by the CLI records its whole config (``hyper_parameters`` with a
    ``_class_path``), and a datamodule its own (``datamodule_hyper_parameters``). One built in
    Python records only its primitive arguments: then only those are compared.
    """
    differences = []
    for section, key in (("model", "hyper_parameters"), ("data", "datamodule_hyper_parameters")):
        saved = dict(checkpoint.get(key) or {})
        saved.pop("_instantiator", None)
        if not saved:
            continue
        ours = flatten_class(current.get(section))
        if "_class_path" not in saved and isinstance(ours, Mapping):
            ours = {name: value for name, value in ours.items() if name in saved}
        differences += config_differences(saved, ours, section)
    return differences


def find_last_checkpoint(method_dir: Path, current: Mapping[str, Any]) -> tuple[Path, Path]:
    """``(run folder, checkpoint)`` that ``--ckpt_path last`` continues, or a ``ValueError``.

    Looks at every run of ``method_dir`` whose ``config.yaml`` has the same ``model`` and
    ``data`` as ``current``; takes the newest intact checkpoint of those runs (an unreadable one
    — empty, truncated, damaged — is skipped, saying so). The error lists each run found and
    why it was not taken.
    """
    runs = sorted(
        (path.parent for path in method_dir.glob(f"*/{RUN_CONFIG}")),
        key=lambda run: run.stat().st_mtime,
        reverse=True,
    )
    candidates, reasons = [], []
    for run in runs:
        try:
            saved = yaml.safe_load((run / RUN_CONFIG).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            reasons.append(f"{run}: unreadable {RUN_CONFIG} ({error})")
            continue
        differences = identity_differences(saved, current)
        checkpoints = run_checkpoints(run)
        if differences:
            reasons.append(f"{run}: other arguments ({_shorten(differences)})")
        elif not checkpoints:
            reasons.append(f"{run}: same config, but no checkpoint (stopped before one was saved)")
        else:
            candidates += [(run, checkpoint) for checkpoint in checkpoints]
    candidates.sort(key=lambda found: found[1].stat().st_mtime, reverse=True)
    for run, checkpoint in candidates:
        try:
            check_checkpoint_file(checkpoint, "ckpt_path")
        except ValueError as error:
            reasons.append(str(error).removeprefix("ckpt_path: "))
            if launched_as_rank_zero():
                print(f"ltlight: skipping an unreadable checkpoint: {error}", file=sys.stderr)
            continue
        return run, checkpoint
    found = "; ".join(reasons) if reasons else "no runs there"
    raise ValueError(
        f"ckpt_path: 'last' continues a run of this config from {method_dir}, but none matches: "
        f"{found}. Give a checkpoint file with --ckpt_path=FILE (and --use_ckpt_config=true to "
        "take its arguments), or leave --ckpt_path out to start a new run"
    )


def _shorten(names: Iterable[str], limit: int = 6) -> str:
    names = list(names)
    more = f", … {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
