"""Reports: the figures and table themselves, and PerClassReport with a real Trainer and loggers."""

import io
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from matplotlib.colors import to_hex
from PIL import Image
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ltlight.callbacks.report import PerClassReport
from ltlight.figures import (
    GROUP_COLORS,
    per_class_error_figure,
    per_class_table,
    reliability_figure,
)
from ltlight.metrics import LongTailMetrics, long_tail_metrics

COUNTS = [150, 60, 20, 5]  # many, medium, medium, few
NAMES = ["cat", "dog", "owl", "yak"]


def render(table) -> str:
    console = Console(file=io.StringIO(), width=120)
    console.print(table)
    return console.file.getvalue()


# -- figures and table -------------------------------------------------------------------------
def test_per_class_figure_orders_bars_head_to_tail_and_colours_them_by_group():
    counts = [10, 500, 50, 200]
    errors = [0.9, 0.1, 0.5, 0.2]
    fig = per_class_error_figure(errors, counts, class_names=["a", "b", "c", "d"])
    ax = fig.axes[0]
    bars = ax.patches
    assert [round(bar.get_height(), 6) for bar in bars] == [0.1, 0.2, 0.5, 0.9]
    colours = [to_hex(bar.get_facecolor()) for bar in bars]
    expected = [GROUP_COLORS[g] for g in ("many", "many", "medium", "few")]
    assert colours == expected
    labels = [tick.get_text() for tick in ax.get_xticklabels()]
    assert labels == ["b\n500", "d\n200", "c\n50", "a\n10"]
    count_axis = fig.axes[1]
    assert count_axis.get_yscale() == "log"
    assert count_axis.lines[0].get_ydata().tolist() == [500, 200, 50, 10]


def test_per_class_figure_without_counts_keeps_class_order_and_skips_nan_classes():
    fig = per_class_error_figure(torch.tensor([0.3, float("nan"), 0.1]))
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    assert heights[0] == pytest.approx(0.3) and math.isnan(heights[1])
    assert len(fig.axes) == 1  # no count axis
    fig.savefig(io.BytesIO(), format="png")  # NaN bars still render


def test_reliability_figure_draws_accuracy_bars_gaps_and_the_diagonal():
    confidence = torch.tensor([float("nan"), 0.3, 0.9])
    accuracy = torch.tensor([float("nan"), 0.5, 0.6])
    count = torch.tensor([0, 4, 6])
    fig = reliability_figure(confidence, accuracy, count, ece=0.26)
    top = fig.axes[0]
    accuracy_bars, gap_bars = top.containers
    assert [b.get_height() for b in accuracy_bars] == pytest.approx([0.5, 0.6])
    assert [b.get_height() for b in gap_bars] == pytest.approx([-0.2, 0.3])  # conf − acc
    assert [b.get_y() for b in gap_bars] == pytest.approx([0.5, 0.6])
    assert top.lines[0].get_xydata().tolist() == [[0, 0], [1, 1]]
    assert any("26.00%" in text.get_text() for text in top.texts)
    histogram = fig.axes[1]
    assert [b.get_height() for b in histogram.patches] == pytest.approx([0, 0.4, 0.6])


def test_reliability_caption_and_table_carry_nll_brier_and_classwise_ece():
    fig = reliability_figure(
        [0.3, 0.9],
        [0.5, 0.6],
        [4, 6],
        ece=0.26,
        calibration={"classwise_ece": 0.051, "nll": 0.734, "brier": 0.412},
    )
    (caption,) = fig.axes[0].texts
    assert caption.get_text().split("\n") == [
        "ECE = 26.00%",
        "classwise ECE = 5.10%",
        "NLL = 0.734",
        "Brier = 0.412",
    ]
    summary = {"nll": 0.7341, "brier": 0.4123, "classwise_ece": 0.051, "few_shot_nll": 2.5}
    text = render(
        per_class_table(
            [0.1, 0.2, 0.3, 0.4],
            COUNTS,
            NAMES,
            summary=summary,
            per_class_calibration_error=[0.011, 0.022, 0.033, 0.044],
        )
    )
    assert "calibration error" in text and "4.40%" in text  # yak's, the rarest class
    assert "NLL" in text and "0.734" in text and "0.412" in text and "5.10%" in text
    assert "few-shot NLL" in text and "2.500" in text


def test_per_class_table_lists_classes_head_to_tail_with_groups_and_summary():
    results = long_tail_metrics(torch.eye(4), torch.tensor([0, 1, 2, 0]), 4, class_counts=COUNTS)
    table = per_class_table(
        results["per_class_error"], COUNTS, class_names=NAMES, summary=results, title="T"
    )
    assert [column.header for column in table.columns] == ["class", "train n", "group", "error"]
    assert list(table.columns[0].cells)[:4] == NAMES
    text = render(table)
    for name, count, group in zip(NAMES, COUNTS, ("many", "medium", "medium", "few"), strict=True):
        line = next(line for line in text.splitlines() if f" {name} " in line)
        assert str(count) in line and group in line
    assert "n/a" in next(line for line in text.splitlines() if " yak " in line)  # no sample
    assert "balanced error" in text and "ECE" in text and "few-shot error" not in text  # NaN


# -- the callback with a real Trainer ------------------------------------------------------------
class TinyModule(L.LightningModule):
    """Keeps LongTailModule's contract: val_metrics, test_metrics, class_counts."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(8, len(COUNTS))
        self.class_counts = list(COUNTS)
        self.val_metrics = LongTailMetrics(len(COUNTS), class_counts=COUNTS)
        self.test_metrics = LongTailMetrics(len(COUNTS), class_counts=COUNTS)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_metrics.update(self.net(x).softmax(dim=1), y)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_metrics.update(self.net(x).softmax(dim=1), y)

    def on_validation_epoch_end(self):
        self.log("val/error", self.val_metrics.compute()["error"])
        self.val_metrics.reset()

    def on_test_epoch_end(self):
        self.log("test/error", self.test_metrics.compute()["error"])
        self.test_metrics.reset()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(seed: int, n: int = 48) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    y = torch.randint(0, len(COUNTS), (n,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=16)


def make_trainer(logger, callback: PerClassReport, root, max_epochs: int = 1) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        logger=logger,
        callbacks=[callback],
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=1,
        log_every_n_steps=1,
    )


def assert_png(path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_csv_logger_gets_png_files_every_n_epochs_and_the_table_is_printed(tmp_path, capsys):
    L.seed_everything(0)
    logger = CSVLogger(tmp_path, name="csv")
    trainer = make_trainer(logger, PerClassReport(every_n_epochs=2), tmp_path, max_epochs=3)
    model = TinyModule()
    trainer.fit(model, loader(0), loader(1))
    reports = tmp_path / "csv" / "version_0" / "reports"
    # Epochs 0, 1, 2 validated; every second one drawn (epoch 1) and the last one (epoch 2);
    # the sanity check never.
    assert sorted(p.name for p in reports.iterdir()) == [
        "val_per_class_error_epoch1.png",
        "val_per_class_error_epoch2.png",
        "val_reliability_epoch1.png",
        "val_reliability_epoch2.png",
    ]
    for path in reports.iterdir():
        assert_png(path)
    out = capsys.readouterr().out
    assert out.count("Validation per-class error (epoch 2)") == 1  # once, at the end of fit
    assert all(name in out for name in ("0", "1", "2", "3", "balanced error", "ECE"))

    trainer.test(model, loader(2))
    assert {"test_per_class_error_epoch3.png", "test_reliability_epoch3.png"} <= {
        p.name for p in reports.iterdir()
    }
    assert len(list(reports.iterdir())) == 6
    assert "Test per-class error" in capsys.readouterr().out


def test_validate_prints_the_table_with_class_names_from_the_datamodule(tmp_path, capsys):
    class DataModule(L.LightningDataModule):
        class_names = NAMES

        def val_dataloader(self):
            return loader(3)

    trainer = make_trainer(CSVLogger(tmp_path), PerClassReport(), tmp_path)
    trainer.validate(TinyModule(), datamodule=DataModule())
    out = capsys.readouterr().out
    assert out.count("Validation per-class error (epoch 0)") == 1
    assert all(f" {name} " in out for name in NAMES)
    assert (
        tmp_path / "lightning_logs" / "version_0" / "reports" / "val_reliability_epoch0.png"
    ).exists()


def test_tensorboard_logger_gets_both_figures_once_per_epoch_not_in_sanity_check(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = make_trainer(logger, PerClassReport(table=False), tmp_path, max_epochs=2)
    trainer.fit(TinyModule(), loader(0), loader(1))
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert {"val/per_class_error", "val/reliability"} <= set(events.Tags()["images"])
    images = events.Images("val/per_class_error")
    assert [image.step for image in images] == [3, 6]  # 3 batches per epoch; no sanity image
    assert all(image.width > 100 and image.height > 100 for image in images)
    assert not (tmp_path / "tb" / "version_0" / "reports").exists()  # no duplicate PNGs


def test_wandb_offline_run_holds_the_images_and_the_per_class_table(tmp_path, monkeypatch):
    import wandb

    for variable, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp_path),
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_DATA_DIR": str(tmp_path / "data"),
        "WANDB_DISABLE_GIT": "true",
    }.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    logger = WandbLogger(save_dir=tmp_path, offline=True, project="ltlight-test")
    trainer = make_trainer(logger, PerClassReport(table=False), tmp_path)
    try:
        trainer.fit(TinyModule(), loader(0), loader(1))
    finally:
        wandb.finish()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    images = run_dir / "files" / "media" / "images" / "val"
    for name in ("per_class_error", "reliability"):
        (png,) = images.glob(f"{name}_*.png")
        assert_png(png)
    assert list((run_dir / "files" / "media" / "table" / "val").glob("per_class_*.table.json"))


def test_module_without_the_metric_attribute_is_reported(tmp_path):
    class NoMetrics(TinyModule):
        def __init__(self):
            super().__init__()
            del self.val_metrics

        def validation_step(self, batch, batch_idx):
            pass

        def on_validation_epoch_end(self):
            pass

    trainer = make_trainer(False, PerClassReport(), tmp_path)
    with pytest.raises(TypeError, match=r"NoMetrics.val_metrics.*LongTailMetrics"):
        trainer.validate(NoMetrics(), loader(0))


def test_callback_builds_from_a_jsonargparse_class_path():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callback", type=L.Callback)
    config = parser.parse_object(
        {
            "callback": {
                "class_path": "ltlight.callbacks.report.PerClassReport",
                "init_args": {"every_n_epochs": 5, "class_names": NAMES},
            }
        }
    )
    callback = parser.instantiate(config).callback
    assert isinstance(callback, PerClassReport)
    assert (callback.every_n_epochs, callback.class_names) == (5, NAMES)


def test_every_n_epochs_below_one_is_rejected():
    with pytest.raises(ValueError, match="every_n_epochs must be an integer >= 1, got 0"):
        PerClassReport(every_n_epochs=0)


def test_saved_figures_are_not_blank():
    generator = torch.Generator().manual_seed(0)
    probs = torch.randn(64, 4, generator=generator).softmax(1)
    target = torch.randint(0, 4, (64,), generator=generator)
    results = long_tail_metrics(probs, target, 4, class_counts=COUNTS)
    buffer = io.BytesIO()
    per_class_error_figure(results["per_class_error"], COUNTS).savefig(buffer, format="png")
    pixels = np.asarray(Image.open(buffer).convert("L"))
    assert pixels.std() > 10
