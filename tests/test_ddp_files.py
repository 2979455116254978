"""DDP over image files with Lightning's own strategy: 2 CPU processes (gloo), decoding workers
(Pillow) or threads (DALI), class-balanced re-sampling from epoch 1 — checked against one
process's EpochSampler and, pixel for pixel, one process's Pillow loader of each rank."""

import json
import os
import subprocess
import sys
from pathlib import Path

import ddp_files_worker
import pytest
import torch
from conftest import FOLDER_COUNTS

from ltlight.data.sampling import EpochSampler

WORKER = Path(__file__).with_name("ddp_files_worker.py")


pytestmark = pytest.mark.slow  # two processes start and train: ~45 s on 2 cores


@pytest.fixture(scope="module", params=["pil", "dali"])
def decoder(request):
    if request.param == "dali":
        pytest.importorskip("nvidia.dali", reason="the dali extra is in the dev extra")
    return request.param


@pytest.fixture(scope="module")
def ranks(image_folder_dir, tmp_path_factory, decoder):
    out = tmp_path_factory.mktemp(f"ddp_files_{decoder}")
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    env.pop("LOCAL_RANK", None)
    result = subprocess.run(
        [sys.executable, str(WORKER), str(out), str(image_folder_dir), decoder],
        cwd=out, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_every_rank_holds_the_whole_training_sets_class_counts(ranks):
    whole = [FOLDER_COUNTS[name] for name in sorted(FOLDER_COUNTS)]
    assert [r["global_rank"] for r in ranks] == [0, 1] and ranks[0]["world_size"] == 2
    for rank in ranks:
        assert rank["datamodule_class_counts"] == rank["module_class_counts"] == whole


def test_each_rank_trains_on_a_disjoint_shard_of_one_draw_class_balanced_from_epoch_1(
    ranks, image_folder_dir
):
    labels = ddp_files_worker.make_datamodule(str(image_folder_dir)).splits["train"].labels
    for epoch in range(ddp_files_worker.EPOCHS):
        balanced = epoch >= ddp_files_worker.DRS_EPOCH
        assert [r["epochs"][epoch]["class_balanced"] for r in ranks] == [balanced] * 2
        single = EpochSampler(labels, shuffle=True, seed=5)
        single.class_balanced = balanced
        order = single.global_order(epoch)  # 42 images: 21 per rank, no padding needed
        assert len(order) == 42
        for r, rank in enumerate(ranks):
            indices = rank["epochs"][epoch]["indices"]
            assert indices == order[r::2].tolist()
            assert rank["epochs"][epoch]["labels"] == labels[indices].tolist()
        if not balanced:
            assert sorted(order.tolist()) == list(range(len(labels)))


def test_each_rank_trains_on_the_pixels_of_one_process_pillow_loader_of_its_shard(
    ranks, image_folder_dir, decoder
):
    """Pillow at full size is DALI's reference (bit-equal); the Pillow run keeps its ``draft``."""
    datamodule = ddp_files_worker.make_datamodule(str(image_folder_dir))
    for r, rank in enumerate(ranks):
        loader = datamodule.make_loader("train", 4, torch.device("cpu"), rank=r, world_size=2)
        loader.dataset.draft = decoder == "pil"
        for epoch, seen in enumerate(rank["epochs"]):
            loader.sampler.set_epoch(epoch)
            loader.class_balanced = seen["class_balanced"]
            sums = [images.double().sum().item() for images, _ in loader]
            assert sums == seen["image_sums"], (decoder, r, epoch)
