"""Smoke tests of the benchmark scripts' small modes: they run end to end and print their tables.

Times are never asserted: the machines that run the tests are shared and noisy.
"""

import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _logger_levels_restored():
    """The benchmarks quieten Lightning's loggers for their run; a test that calls a benchmark's
    ``main`` in this process must not leave them quiet for the tests after it."""
    names = ["lightning", "lightning.pytorch", "lightning.fabric", *logging.root.manager.loggerDict]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


TINY = ["--steps", "1", "--warmup", "1", "--images", "256", "--eval-batch", "256"]


def test_train_speed_prints_both_pipelines_and_their_ratio():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_speed.py"), *TINY, "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| passive |")]
    assert [row.split("|")[2].strip() for row in rows] == ["ltlight", "official"]
    assert "synthetic CIFAR-10-LT-sized data" in done.stdout
    assert rows[1].split("|")[5].strip() == "1.00×"


@pytest.mark.parametrize("worker", ["paper-ltlight", "paper-official"])
def test_paper_schedule_runs_on_the_cpu_with_the_gpu_settings(worker, capsys):
    train_speed = load("train_speed")
    gpu_settings = ["--channels-last", "--no-bf16"]  # bf16 convolutions are very slow on CPUs
    tiny = ["--images", "128", "--eval-batch", "128"]  # one training and one evaluation batch
    argv = [*tiny, *gpu_settings, "--paper-schedule", "--epochs", "1", "--official-epochs", "1"]
    assert train_speed.main([*argv, "--worker", worker]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["wall_s"] > 0 and 0 <= result["error"] <= 100


def test_accuracy_digits_table(tmp_path, capsys):
    accuracy = load("accuracy")
    out = tmp_path / "results.json"
    figure = tmp_path / "shift.png"
    argv = ["--dataset", "digits_lt", "--methods", "ce", "ldam_drw", "crt", "--epochs", "2"]
    argv += ["--figure", str(figure)]
    assert accuracy.main([*argv, "--out", str(out), "--out", str(tmp_path / "r.md")]) == 0
    printed = capsys.readouterr().out
    assert "| 10 | ce | 1 |" in printed and "| 10 | ldam_drw + TS | 1 |" in printed
    runs = json.loads(out.read_text())["runs"]
    assert [r["method"] for r in runs] == [
        "ce",
        "ce + TS",
        "ce + LA",
        "ce + LA + TS",
        "ce + τ-norm",
        "ce + τ-norm + TS",
        "ldam_drw",
        "ldam_drw + TS",
        "crt",
        "crt + TS",
    ]
    assert all(0 <= r["balanced_error"] <= 100 and 0 <= r["ece"] <= 100 for r in runs)
    # Temperature scaling never changes the error; it is fitted on validation (its T is kept).
    for plain, scaled in zip(runs[::2], runs[1::2], strict=True):
        assert scaled["error"] == plain["error"] and scaled["T"] > 0
    assert "| ratio | method |" in (tmp_path / "r.md").read_text()
    assert "forward 50" in printed and "ce + LA(q), q known" in printed
    assert figure.stat().st_size > 0


@pytest.mark.slow
def test_data_files_table_prints_both_pipelines_and_their_ratio(tmp_path):
    done = subprocess.run(
        [
            sys.executable, str(BENCHMARKS / "data.py"), "--files", "--images", "40",
            "--epochs", "1", "--file-batch-size", "8", "--workers", "1",
            "--jpeg-dir", str(tmp_path / "jpegs"),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    names = [" ".join(row.split("|")[1].split()[:3]) for row in rows]
    assert names == [
        "pipeline (RandomResizedCrop 224",
        "torchvision ImageFolder +",
        "ltlight ImageFolderLTDataModule, decoder=pil",
        "ltlight ImageFolderLTDataModule, decoder=dali",
    ]
    cells = [[cell.strip() for cell in row.split("|")[2:-1]] for row in rows[1:]]
    assert cells[0][1] == cells[0][3] == "1.00×"  # torchvision's images/s and CPU ratios
    assert all(float(row[2]) > 0 for row in cells)  # CPU ms per image, counted for every pipeline
    assert len(list((tmp_path / "jpegs").rglob("*.jpg"))) == 40


@pytest.mark.slow
def test_multilabel_mosaics_table(fashion_mnist_system_dir, capsys):
    multilabel = load("multilabel")
    tiny = ["--train", "64", "--val", "40", "--test", "40", "--epochs", "2", "--batch-size", "32"]
    argv = ["--data-dir", fashion_mnist_system_dir, *tiny, "--methods", "BCE", "DB+DRW"]
    argv += ["--threads", str(torch.get_num_threads())]  # leave this process as it was
    assert multilabel.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0].split("|")[2].strip() == "mAP"
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["BCE", "DB+DRW"]
    for row in rows[1:]:
        cells = [float(cell) for cell in row.split("|")[2:-1]]
        assert all(0 <= cell <= 100 or math.isnan(cell) for cell in cells), row
    assert "training positives per class (64 mosaics, ρ = 1000)" in out


def test_multilabel_mosaics_hold_the_tiles_and_their_classes():
    multilabel = load("multilabel")
    images = np.arange(40 * 28 * 28, dtype=np.int64).reshape(40, 28, 28) % 251
    images = images.astype(np.uint8)
    labels = np.arange(40) % 10
    grid, target = multilabel.mosaics(images, labels, 30, np.full(10, 0.1), seed=0)
    assert grid.shape == (30, 1, 56, 56) and target.shape == (30, 10)
    for m in range(30):
        present = set()
        for row, col in ((0, 0), (0, 1), (1, 0), (1, 1)):
            tile = grid[m, 0, 28 * row : 28 * row + 28, 28 * col : 28 * col + 28].numpy()
            index = next(i for i in range(40) if np.array_equal(images[i], tile))
            present.add(int(labels[index]))
        assert set(torch.nonzero(target[m]).flatten().tolist()) == present
    probs = multilabel.tile_probabilities(1000.0)
    assert probs.sum() == pytest.approx(1) and probs[0] / probs[-1] == pytest.approx(1000)


@pytest.mark.slow  # every benchmark of the GPU script once, small, on the CPU: ~2-3 min
def test_gpu_script_runs_every_stage_in_its_reduced_cpu_mode(tmp_path):
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh"), "--cpu"],
        capture_output=True, text=True, timeout=1800,
        env={**os.environ, "JPEG_DIR": str(tmp_path / "jpegs")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "(failed" not in done.stdout and "(stopped" not in done.stdout
    stages = done.stdout.split("\n## ")[1:]
    assert [stage.split(".")[0] for stage in stages] == ["1", "2", "3", "4", "5"]
    first_cells = [
        {line.split("|")[1].strip() for line in stage.splitlines() if line.startswith("| ")}
        for stage in stages
    ]
    assert "ltlight" in first_cells[0] and "ltlight, compile=True" in first_cells[1]
    assert "resnet32" in first_cells[2]
    assert any("decoder=dali" in cell for cell in first_cells[3])
    assert {"F.cross_entropy", "LDAMLoss (cosine logits) + DRW"} <= first_cells[4]


@pytest.mark.slow
def test_finetune_smoke_prints_one_row_per_method_and_loss(fashion_mnist_dir, capsys):
    """benchmarks/finetune.py --smoke on the fake Fashion-MNIST files: pretrain, save, fine-tune
    from the file, print the table (scratch and AdaptFormer with LA)."""
    finetune = load("finetune")
    finetune.main(["--smoke", "--data-dir", fashion_mnist_dir])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "| LA |" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["scratch", "AdaptFormer"]
    trainable = [int(row.split("|")[8].replace(",", "")) for row in rows]
    assert trainable[1] < trainable[0]  # the adapters and head are a fraction of the model
