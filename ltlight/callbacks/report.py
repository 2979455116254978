"""PerClassReport: per-class error and reliability figures to the loggers, a table at the end.

Contract with the LightningModule (:class:`~ltlight.LongTailModule` keeps it): attributes
``val_metrics`` and ``test_metrics`` (:class:`~ltlight.metrics.LongTailMetrics`, updated in the
steps, computed, logged and reset by the module in its own ``on_*_epoch_end``) and
``class_counts`` (training counts, ``list[int]`` or ``None``). Callback hooks run before the
module's, so at ``on_validation_epoch_end`` the metric still holds the epoch; torchmetrics caches
``compute()``, so the module's own call costs nothing more.
"""

import io
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from matplotlib.figure import Figure
from rich.console import Console
from torch import Tensor

from ltlight.checks import check_integer
from ltlight.figures import (
    head_to_tail_order,
    per_class_error_figure,
    per_class_table,
    reliability_figure,
)
from ltlight.metrics import MULTILABEL_SCALAR_KEYS, SCALAR_KEYS, LongTailMetrics, MultiLabelMetrics

_METRICS_ATTRIBUTE = {"val": "val_metrics", "test": "test_metrics"}
_TITLES = {"val": "Validation", "test": "Test"}


class PerClassReport(L.Callback):
    """Logs a per-class error bar chart and a reliability diagram; prints a per-class table.

    At the end of each validation epoch (every ``every_n_epochs`` during ``fit``; always in
    ``validate``; never in the sanity check) and of each test epoch, on global rank zero:

    * :class:`~lightning.pytorch.loggers.WandbLogger`: both figures as ``wandb.Image`` under
      ``<stage>/per_class_error`` and ``<stage>/reliability``, and a ``wandb.Table``
      ``<stage>/per_class`` (class, train count, error) to chart in the W&B UI;
    * :class:`~lightning.pytorch.loggers.TensorBoardLogger`: ``add_figure`` under the same tags;
    * any other logger with a ``log_dir`` (``CSVLogger``, ...): PNG files
      ``<log_dir>/reports/<stage>_per_class_error_epoch<N>.png`` and
      ``<stage>_reliability_epoch<N>.png`` (``N`` the 0-based epoch; a later ``validate`` of the
      same epoch overwrites).

    Multi-label data (the module's metrics are :class:`~ltlight.metrics.MultiLabelMetrics`): the
    figure is the per-class AP, head → tail (``<stage>/per_class_ap``), the W&B table has AP,
    AUROC and F1 per class, and the terminal table lists AP with mAP, head / medium / tail mAP,
    F1, ECE and Brier below.

    At the end of ``fit`` (last validation), of ``validate`` and of ``test`` the per-class table
    (head → tail, with overall, balanced, many/medium/few-shot error and ECE) is printed to the
    terminal with rich.

    Args:
        every_n_epochs: during ``fit``, draw the figures every this many epochs (>= 1) and
            at the last epoch.
        figures: log the figures at all.
        table: print the terminal table.
        class_names: names for the classes; by default ``trainer.datamodule.class_names`` if the
            datamodule has it, else the class indices.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        figures: bool = True,
        table: bool = True,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.every_n_epochs = check_integer("every_n_epochs", every_n_epochs, 1)
        self.figures = figures
        self.table = table
        self.class_names = class_names
        # Last computed results per stage, on the CPU, for the table printed at the end. A display
        # cache only: nothing in training depends on it, so it is not checkpointed.
        self._last: dict[str, tuple[dict[str, Tensor], int]] = {}
        # The epoch of the checkpoint `validate`/`test` evaluate (their trainer counts from 0).
        self._checkpoint_epoch: int | None = None

    # -- hooks -------------------------------------------------------------------------------
    # The metric is checked at the start of the loops, not in `setup`: callbacks' `setup` runs
    # before the module's, which is where LongTailModule creates its metrics.
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last.pop("val", None)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        epoch = checkpoint.get("epoch")
        self._checkpoint_epoch = int(epoch) if epoch is not None else None

    def _epoch(self, trainer: L.Trainer) -> int:
        """The epoch the weights come from: the checkpoint's outside ``fit``."""
        if trainer.state.fn != TrainerFn.FITTING and self._checkpoint_epoch is not None:
            return self._checkpoint_epoch
        return trainer.current_epoch

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._metrics(pl_module, "val")
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._last.pop("val", None)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._metrics(pl_module, "test")
        self._last.pop("test", None)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1
        last_epoch = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        draw = (
            trainer.state.fn != TrainerFn.FITTING or epoch % self.every_n_epochs == 0 or last_epoch
        )
        self._report_epoch(trainer, pl_module, "val", draw)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report_epoch(trainer, pl_module, "test", draw=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._print_table(trainer, pl_module, "val")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_table(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_table(trainer, pl_module, "test")

    # -- the work ----------------------------------------------------------------------------
    @staticmethod
    def _metrics(pl_module: L.LightningModule, stage: str) -> LongTailMetrics | MultiLabelMetrics:
        name = _METRICS_ATTRIBUTE[stage]
        metrics = getattr(pl_module, name, None)
        if not isinstance(metrics, (LongTailMetrics, MultiLabelMetrics)):
            raise TypeError(
                f"PerClassReport needs `{type(pl_module).__name__}.{name}` to be a "
                f"ltlight.metrics.LongTailMetrics or MultiLabelMetrics (updated in the {stage} "
                "step), got "
                f"{type(metrics).__name__}"
            )
        return metrics

    def _report_epoch(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, draw: bool
    ) -> None:
        metrics = self._metrics(pl_module, stage)
        # Every rank, whether or not it saw a batch: compute() is a collective (DDP all-gather)
        # that every other rank enters, even though only rank 0 draws. Whether there is anything
        # to report is then decided from the synced counts, identically everywhere.
        computed = metrics.compute()
        if not trainer.is_global_zero:
            return
        results = {key: value.detach().cpu() for key, value in computed.items()}
        if int(results["positives" if "per_class_ap" in results else "bin_count"].sum()) == 0:
            return
        self._last[stage] = (results, self._epoch(trainer))
        if draw and self.figures and trainer.loggers:
            self._log_figures(trainer, pl_module, stage, results)

    def _context(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> dict[str, Any]:
        metrics = self._metrics(pl_module, stage)
        counts = getattr(pl_module, "class_counts", None)
        if counts is None and metrics.class_counts is not None:
            counts = metrics.class_counts.tolist()
        names = self.class_names
        if names is None:
            names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
        return {
            "class_counts": None if counts is None else [int(c) for c in counts],
            "class_names": None if names is None else [str(n) for n in names],
            "many_threshold": metrics.many_threshold,
            "few_threshold": metrics.few_threshold,
        }

    def _log_figures(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        stage: str,
        results: dict[str, Tensor],
    ) -> None:
        context = self._context(trainer, pl_module, stage)
        epoch = self._epoch(trainer)
        title = f"{_TITLES[stage]}, epoch {epoch}"
        if "per_class_ap" in results:  # multi-label: per-class AP, head → tail
            figures = {
                "per_class_ap": per_class_error_figure(
                    results["per_class_ap"],
                    title=f"Per-class AP ({title})",
                    value_name="AP",
                    mean_name="mAP",
                    **context,
                )
            }
        else:
            figures = self._single_label_figures(results, title, context)
        self._log_to_loggers(trainer, stage, figures, results, context, epoch)

    @staticmethod
    def _single_label_figures(
        results: dict[str, Tensor], title: str, context: dict[str, Any]
    ) -> dict[str, Figure]:
        return {
            "per_class_error": per_class_error_figure(
                results["per_class_error"], title=f"Per-class error ({title})", **context
            ),
            "reliability": reliability_figure(
                results["bin_confidence"],
                results["bin_accuracy"],
                results["bin_count"],
                ece=results["ece"],
                title=f"Reliability ({title})",
                calibration={k: results[k] for k in ("classwise_ece", "nll", "brier")},
            ),
        }

    def _log_to_loggers(
        self,
        trainer: L.Trainer,
        stage: str,
        figures: dict[str, Figure],
        results: dict[str, Tensor],
        context: dict[str, Any],
        epoch: int,
    ) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                self._log_wandb(logger, stage, figures, results, context, trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):
                for name, fig in figures.items():
                    logger.experiment.add_figure(
                        f"{stage}/{name}", fig, global_step=trainer.global_step, close=False
                    )
            elif logger.log_dir is not None:
                directory = Path(logger.log_dir) / "reports"
                directory.mkdir(parents=True, exist_ok=True)
                for name, fig in figures.items():
                    fig.savefig(directory / f"{stage}_{name}_epoch{epoch}.png", dpi=100)
        for fig in figures.values():
            # Not pyplot figures, so nothing global to close; drop the drawn artists now.
            fig.clear()

    @staticmethod
    def _log_wandb(
        logger: WandbLogger,
        stage: str,
        figures: dict[str, Figure],
        results: dict[str, Tensor],
        context: dict[str, Any],
        step: int,
    ) -> None:
        import wandb
        from PIL import Image

        payload: dict[str, Any] = {}
        for name, fig in figures.items():
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=100)
            buffer.seek(0)
            payload[f"{stage}/{name}"] = wandb.Image(Image.open(buffer))
        columns = ["error", "calibration_error"]
        if "per_class_ap" in results:
            columns = ["ap", "auroc", "f1"]
        values = [results[f"per_class_{column}"].tolist() for column in columns]
        counts = context["class_counts"]
        names = context["class_names"] or [str(i) for i in range(len(values[0]))]
        rows = [
            [names[i], None if counts is None else counts[i], *(v[i] for v in values)]
            for i in head_to_tail_order(counts, len(values[0])).tolist()
        ]
        payload[f"{stage}/per_class"] = wandb.Table(
            columns=["class", "train_count", *columns], data=rows
        )
        # One experiment.log call, so the images and the table share one W&B step.
        logger.log_metrics(payload, step=step)

    def _print_table(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not (self.table and trainer.is_global_zero and stage in self._last):
            return
        results, epoch = self._last[stage]
        context = self._context(trainer, pl_module, stage)
        if "per_class_ap" in results:
            summary = {key: results[key] for key in MULTILABEL_SCALAR_KEYS}
            title = f"{_TITLES[stage]} per-class AP (epoch {epoch})"
            table = per_class_table(
                results["per_class_ap"], summary=summary, title=title, value_name="AP", **context
            )
        else:
            summary = {key: results[key] for key in SCALAR_KEYS}
            title = f"{_TITLES[stage]} per-class error (epoch {epoch})"
            table = per_class_table(
                results["per_class_error"],
                summary=summary,
                title=title,
                per_class_calibration_error=results["per_class_calibration_error"],
                **context,
            )
        Console().print(table)
