"""PredictionWriter: ``trainer.predict`` → one CSV row per image, in the predict split's order.

``ltlight predict --config C --ckpt_path P`` adds one and writes ``predictions-<P's name>.csv``
(``predictions-last.csv``) in the run's folder. Columns: ``index`` (the image's position in the
predict split), ``file`` (when the datamodule lists the predicted files in ``predict_files``),
``label`` and ``label_name`` (when the batch carries targets), ``predicted``, ``predicted_name``,
``confidence`` (its probability), ``top5_classes`` and ``top5_probabilities`` (space-separated,
most probable first). The probabilities are :meth:`~ltlight.LongTailModule.predict_proba`'s, so
a fitted temperature or logit adjustment is applied.

Multi-label modules (``module.multi_label``) write, per image, ``labels`` / ``label_names`` (the
targets' positives, when the batch carries targets), ``predicted`` / ``predicted_names`` (every
label whose probability reaches its threshold in ``module.label_decision``: space-separated
indices, names joined by ``|``) and ``probabilities`` (every label's, in class order).

Under DDP each rank predicts its own shard of the split; the rows of every rank are gathered on
rank 0, which writes the one file, in the split's order: the same file, row for row, as one
process writes.
"""

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from ltlight.preprocessing import class_name


class PredictionWriter(BasePredictionWriter):
    """Write the predictions of ``trainer.predict`` to a CSV file.

    Args:
        path: the CSV file (its folder is created); ``None``:
            ``<trainer.default_root_dir>/predictions.csv``. With several processes rank 0 writes
            it, with the rows of every rank.
        top_k: how many classes the ``top<k>_*`` columns list (>= 1; at most the class count).

    The module's ``predict_step`` must return probabilities ``(N, C)``, as
    :class:`~ltlight.LongTailModule`'s does. Each row's ``index`` is the image's position in
    the predict split: given by Lightning for a torch ``DataLoader``, else read from the
    loader's ``sampler.indices()`` (ltlight's loaders: this rank's positions, in order), else
    counted (one process only).

    Example:
        >>> writer = PredictionWriter("predictions.csv", top_k=3)
    """

    def __init__(self, path: str | None = None, top_k: int = 5) -> None:
        super().__init__(write_interval="batch")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
        self.path = path
        self.top_k = top_k
        #: Rows written to :attr:`written_to` (on rank 0: every rank's).
        self.rows = 0
        self.written_to: Path | None = None
        self._header: list[str] | None = None
        self._predicted: list[tuple[tuple[int, int], list[Any]]] = []
        self._positions: dict[int, int] = {}
        self._names: list[str] | None = None
        self._files: list[str] | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.written_to = Path(
            self.path or os.path.join(trainer.default_root_dir, "predictions.csv")
        )
        self.rows, self._header, self._predicted, self._positions = 0, None, [], {}
        datamodule = getattr(trainer, "datamodule", None)
        preprocessing = getattr(pl_module, "preprocessing", None)
        names = getattr(preprocessing, "class_names", None) or getattr(
            datamodule, "class_names", None
        )
        self._names = [str(n) for n in names] if names else None
        files = getattr(datamodule, "predict_files", None)
        self._files = [str(f) for f in files] if files is not None else None

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(prediction, Tensor) or prediction.dim() != 2:
            raise TypeError(
                "PredictionWriter needs predict_step to return probabilities (N, C), got "
                f"{type(prediction).__name__}"
            )
        probs = prediction.detach().float().cpu()
        target = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else None
        if getattr(pl_module, "multi_label", False):
            chosen = pl_module.label_decision.decide(prediction.detach().float()).cpu()
            indices = self._split_indices(trainer, batch_indices, probs.shape[0], dataloader_idx)
            self._multi_label_rows(indices, probs, chosen, target, dataloader_idx)
            return
        target = target.cpu().tolist() if isinstance(target, Tensor) else None
        k = min(self.top_k, probs.shape[1])
        top_p, top_c = torch.topk(probs, k, dim=1)
        if self._header is None:
            header = ["index"] + (["file"] if self._files is not None else [])
            header += ["label", "label_name"] if target is not None else []
            header += ["predicted", "predicted_name", "confidence"]
            self._header = [*header, f"top{k}_classes", f"top{k}_probabilities"]
        indices = self._split_indices(trainer, batch_indices, probs.shape[0], dataloader_idx)
        for row, index in enumerate(indices):
            values: list[Any] = [index]
            if self._files is not None:
                values.append(self._files[index] if index < len(self._files) else "")
            if target is not None:  # a negative label: unknown (new images), left empty
                label = int(target[row])
                values += [label, class_name(self._names, label)] if label >= 0 else ["", ""]
            best = int(top_c[row, 0])
            values += [best, class_name(self._names, best), f"{float(top_p[row, 0]):.6f}"]
            values.append(" ".join(str(int(c)) for c in top_c[row]))
            values.append(" ".join(f"{float(p):.6f}" for p in top_p[row]))
            self._predicted.append(((dataloader_idx, index), values))

    def _multi_label_rows(
        self,
        indices: list[int],
        probs: Tensor,
        chosen: Tensor,
        target: Tensor | None,
        dataloader_idx: int,
    ) -> None:
        """One row per image: its positives (targets), the labels above threshold, and every
        label's probability."""
        if self._header is None:
            header = ["index"] + (["file"] if self._files is not None else [])
            header += ["labels", "label_names"] if target is not None else []
            self._header = [*header, "predicted", "predicted_names", "probabilities"]
        positives = None if target is None else target.detach().cpu().eq(1)
        for row, index in enumerate(indices):
            values: list[Any] = [index]
            if self._files is not None:
                values.append(self._files[index] if index < len(self._files) else "")
            for labels in ([] if positives is None else [positives[row]]) + [chosen[row]]:
                classes = torch.nonzero(labels).flatten().tolist()
                values.append(" ".join(str(c) for c in classes))
                values.append("|".join(class_name(self._names, c) for c in classes))
            values.append(" ".join(f"{float(p):.6f}" for p in probs[row]))
            self._predicted.append(((dataloader_idx, index), values))

    def _split_indices(
        self, trainer: L.Trainer, given: Sequence[int] | None, rows: int, dataloader_idx: int
    ) -> list[int]:
        """The positions in the predict split of a batch's ``rows`` images."""
        start = self._positions.get(dataloader_idx, 0)
        self._positions[dataloader_idx] = start + rows
        if given is not None and len(given) == rows:  # Lightning's, for a torch DataLoader
            return [int(index) for index in given]
        sampler = getattr(_predict_loader(trainer, dataloader_idx), "sampler", None)
        if callable(getattr(sampler, "indices", None)):  # ltlight's loaders: this rank's shard
            return sampler.indices()[start : start + rows].tolist()
        if trainer.world_size > 1:
            raise RuntimeError(
                "PredictionWriter under DDP needs each image's position in the predict split: "
                "give a torch DataLoader, or a loader whose sampler has indices() (as ltlight's)"
            )
        return list(range(start, start + rows))

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        header, predicted = self._header, self._predicted
        if trainer.world_size > 1:
            every_rank = [None] * trainer.world_size if trainer.is_global_zero else None
            torch.distributed.gather_object((header, predicted), every_rank, dst=0)
            if every_rank is not None:
                header = next((h for h, _ in every_rank if h is not None), None)
                predicted = [row for _, rows in every_rank for row in rows]
        if trainer.is_global_zero:
            self.rows = self._write(header, predicted)
        self._predicted = []

    def _write(self, header: list[str] | None, predicted: list[tuple[Any, list[Any]]]) -> int:
        """Write the rows in the split's order (each image once); the number of rows."""
        rows = dict(sorted(predicted, key=lambda item: item[0]))  # a padded shard repeats one
        assert self.written_to is not None
        self.written_to.parent.mkdir(parents=True, exist_ok=True)
        with open(self.written_to, "w", newline="") as file:
            writer = csv.writer(file)
            if header is not None:
                writer.writerow(header)
            writer.writerows(rows.values())
        return len(rows)


def _predict_loader(trainer: L.Trainer, dataloader_idx: int) -> Any:
    loaders = trainer.predict_dataloaders
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if isinstance(loaders, Sequence):
        return loaders[dataloader_idx]
    return loaders
