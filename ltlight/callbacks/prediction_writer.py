"""PredictionWriter: ``trainer.predict`` → one CSV row per image, written batch by batch.

``ltlight predict --config C --ckpt_path P`` adds one and writes ``predictions.csv`` in the run's
folder. Columns: ``index`` (position in the predict loader's order), ``file`` (when the
datamodule lists the predicted files in ``predict_files``), ``label`` and ``label_name`` (when
the batch carries targets), ``predicted``, ``predicted_name``, ``confidence`` (its probability),
``top5_classes`` and ``top5_probabilities`` (space-separated, most probable first). The
probabilities are :meth:`~ltlight.LongTailModule.predict_proba`'s, so a fitted temperature or
logit adjustment is applied.
"""

import csv
import io
import os
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
            ``<trainer.default_root_dir>/predictions.csv``. With several processes each rank
            writes ``predictions.rank<R>.csv``.
        top_k: how many classes the ``top<k>_*`` columns list (>= 1; at most the class count).

    The module's ``predict_step`` must return probabilities ``(N, C)``, as
    :class:`~ltlight.LongTailModule`'s does.

    Example:
        >>> writer = PredictionWriter("predictions.csv", top_k=3)
    """

    def __init__(self, path: str | None = None, top_k: int = 5) -> None:
        super().__init__(write_interval="batch")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
        self.path = path
        self.top_k = top_k
        self.rows = 0
        self.written_to: Path | None = None
        self._file: io.TextIOWrapper | None = None
        self._writer: Any = None
        self._names: list[str] | None = None
        self._files: list[str] | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = Path(self.path or os.path.join(trainer.default_root_dir, "predictions.csv"))
        if trainer.world_size > 1:
            path = path.with_suffix(f".rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.written_to, self.rows = path, 0
        self._file = open(path, "w", newline="")  # noqa: SIM115 - closed at on_predict_end
        self._writer = None
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
        batch_indices: Any,
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
        target = target.cpu().tolist() if isinstance(target, Tensor) else None
        k = min(self.top_k, probs.shape[1])
        top_p, top_c = torch.topk(probs, k, dim=1)
        if self._writer is None:
            header = ["index"] + (["file"] if self._files is not None else [])
            header += ["label", "label_name"] if target is not None else []
            header += ["predicted", "predicted_name", "confidence"]
            header += [f"top{k}_classes", f"top{k}_probabilities"]
            self._writer = csv.writer(self._file)
            self._writer.writerow(header)
        for row in range(probs.shape[0]):
            index = self.rows
            values: list[Any] = [index]
            if self._files is not None:
                values.append(self._files[index] if index < len(self._files) else "")
            if target is not None:
                values += [target[row], class_name(self._names, int(target[row]))]
            best = int(top_c[row, 0])
            values += [best, class_name(self._names, best), f"{float(top_p[row, 0]):.6f}"]
            values.append(" ".join(str(int(c)) for c in top_c[row]))
            values.append(" ".join(f"{float(p):.6f}" for p in top_p[row]))
            self._writer.writerow(values)
            self.rows += 1

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
