"""Image datasets that do not fit on every node: LitData's optimised chunks, streamed on demand.

:func:`convert` writes any file datamodule (your folder, ImageNet-LT, Places-LT, iNaturalist) in
LitData's format with ``litdata.optimize``: per split a folder of chunks holding each image's
encoded bytes, unchanged (no re-encoding: the pixels the pipeline decodes are the files'), and the
label; beside them ``ltlight.json`` with the class names, the class counts and every split's
labels and image paths in stored order (predictions name each image by its path). Splits are
converted as the datamodule prepares them (validation carved, profile applied), so the streamed
run trains on exactly the same samples.

:class:`StreamingLTDataModule` reads that form from a local folder, a shared disk or object storage
(``s3://``, ``gs://``, … — whatever LitData reads): ``litdata.StreamingDataset`` fetches chunks
into a local cache bounded by ``max_cache_size``. The class counts come from ``ltlight.json``
(identical on every rank, known before any image is read). Sampling, sharding, augmentation and
resume are those of the other file datamodules (:class:`~ltlight.data.files.loader.FileDataLoader`
over :class:`~ltlight.data.sampling.EpochSampler`): each sample is read by index, so DRS's
class-balanced epochs and exact resume work unchanged; the price is that a shuffled epoch touches
every chunk of a rank's shard in random order, which the cache absorbs when it holds the shard.

Needs the optional extra: ``pip install 'ltlight[stream]'``. Convert from the command line::

    python -m ltlight.data.files.streaming --data configs/imagenet_lt/dataset.yaml \\
        --output_dir /shared/imagenet_lt_litdata [--num_workers 8] [--chunk_bytes 256MB]
"""

import json
import multiprocessing
import os
import sys
from typing import Any

import yaml

from ltlight.checks import check_integer
from ltlight.data.files.datamodule import FileLongTailDataModule
from ltlight.data.files.dataset import ImageFileDataset
from ltlight.data.files.image_list import ImageList

#: The metadata file beside the split folders.
METADATA = "ltlight.json"
SPLITS = ("train", "val", "test")


def _litdata() -> Any:
    try:
        import litdata
    except ImportError:
        raise ImportError(
            "streaming needs LitData: pip install 'ltlight[stream]' (or pip install litdata)"
        ) from None
    return litdata


class _EncodedImage:
    """``optimize``'s function: one sample → its file's bytes and its label (picklable)."""

    def __init__(self, images: ImageList) -> None:
        self.images = images

    def __call__(self, index: int) -> dict[str, Any]:
        with open(self.images.full_path(index), "rb") as f:
            data = f.read()
        return {"image": data, "label": int(self.images.labels[index]), "index": index}


def convert(
    data: FileLongTailDataModule,
    output_dir: str,
    num_workers: int = 1,
    chunk_bytes: str = "64MB",
) -> dict[str, Any]:
    """Write ``data``'s splits in LitData's format under ``output_dir`` and ``ltlight.json``.

    Args:
        data: any file datamodule (its lists are read and checked as for training).
        output_dir: a local or shared folder (``<output_dir>/<split>/`` and ``ltlight.json``);
            upload it to object storage afterwards if the nodes read from there.
        num_workers: conversion processes.
        chunk_bytes: LitData's chunk size.

    Returns:
        The metadata written to ``ltlight.json``.
    """
    litdata = _litdata()
    num_workers = check_integer("num_workers", num_workers, 1)
    if os.path.exists(os.path.join(output_dir, METADATA)):
        raise FileExistsError(f"{output_dir} already holds a converted dataset ({METADATA})")
    metadata: dict[str, Any] = {
        "source": f"{type(data).__module__}.{type(data).__qualname__}",
        "class_names": data.class_names,
        "class_counts": data.class_counts,
        "labels": {},
        "paths": {},
    }
    for split in SPLITS:
        images = data.splits[split]
        if images is None:
            continue
        folder = os.path.join(output_dir, split)
        litdata.optimize(
            fn=_EncodedImage(images),
            inputs=list(range(len(images))),
            output_dir=folder,
            chunk_bytes=chunk_bytes,
            num_workers=num_workers,
            verbose=False,
            # LitData spawns by default: each process would import torch again (seconds each).
            start_method="fork" if "fork" in multiprocessing.get_all_start_methods() else None,
        )
        # The stored order is LitData's: read the labels back in it (one sequential pass).
        stored = litdata.StreamingDataset(folder)
        positions = [int(stored[i]["index"]) for i in range(len(stored))]
        metadata["labels"][split] = [int(images.labels[i]) for i in positions]
        metadata["paths"][split] = [images.paths[i] for i in positions]
    with open(os.path.join(output_dir, METADATA), "w") as f:
        json.dump(metadata, f)
    return metadata


class StreamingImageDataset(ImageFileDataset):
    """:class:`ImageFileDataset` whose bytes come from a ``litdata.StreamingDataset``.

    The streaming dataset is opened lazily in each process (each DataLoader worker has its own).
    """

    def __init__(
        self,
        images: ImageList,
        input_dir: str,
        cache_dir: str | None,
        max_cache_size: str,
        train: bool,
        size: int = 224,
        resize: int = 256,
        skip_bad_images: bool = False,
    ) -> None:
        super().__init__(
            images, train=train, size=size, resize=resize, skip_bad_images=skip_bad_images
        )
        self.input_dir = input_dir
        self.cache_dir = cache_dir
        self.max_cache_size = max_cache_size
        self._stream: Any = None

    def read_bytes(self, index: int) -> bytes:
        if self._stream is None:
            self._stream = _litdata().StreamingDataset(
                self.input_dir, cache_dir=self.cache_dir, max_cache_size=self.max_cache_size
            )
        return self._stream[index]["image"]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stream": None}  # workers open their own


class StreamingLTDataModule(FileLongTailDataModule):
    """A dataset converted by :func:`convert`, streamed by LitData from a folder or a bucket.

    Args:
        input_dir: the converted folder (``<split>/`` and ``ltlight.json``), local or a URL
            LitData reads (``s3://bucket/imagenet_lt``).
        cache_dir: where chunks are cached locally; ``None``: LitData's default.
        max_cache_size: the most local disk the cache may take (LitData's format, ``"50GB"``).
        **kwargs: the arguments of
            :class:`~ltlight.data.files.datamodule.FileLongTailDataModule` (``batch_size``,
            ``num_workers``, ``image_size``, …), by name, but for the validation split, the
            profile and the file checks: applied at conversion.
    """

    name = "LitData stream"

    def __init__(
        self,
        input_dir: str,
        cache_dir: str | None = None,
        max_cache_size: str = "50GB",
        **kwargs: Any,
    ) -> None:
        # Applied at conversion: the stored splits are the checked, carved and profiled ones.
        super().__init__(
            check_files=False,
            val_per_class=0,
            imbalance_ratio=None,
            profile="exp",
            step_fraction=0.5,
            **kwargs,
        )
        self.input_dir = input_dir.rstrip("/")
        self.cache_dir = cache_dir
        self.max_cache_size = max_cache_size

    def _metadata(self) -> dict[str, Any]:
        path = f"{self.input_dir}/{METADATA}"
        if "://" in self.input_dir:
            import fsspec

            with fsspec.open(path, "r") as f:
                return json.load(f)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} does not exist: convert a dataset first "
                "(python -m ltlight.data.files.streaming)"
            )
        with open(path) as f:
            return json.load(f)

    def read_lists(self) -> tuple[ImageList, ImageList | None, ImageList | None, list[str]]:
        import torch

        metadata = self._metadata()
        lists: dict[str, ImageList | None] = dict.fromkeys(SPLITS)
        for split, labels in metadata["labels"].items():
            # The images' paths in the converted dataset (for predictions.csv and messages);
            # a conversion older than them names them by position.
            paths = metadata.get("paths", {}).get(split)
            lists[split] = ImageList(
                self.input_dir,
                paths or [f"{split}/{i}" for i in range(len(labels))],
                torch.tensor(labels, dtype=torch.int64),
                f"{self.input_dir}/{split}",
            )
        if lists["train"] is None:
            raise ValueError(f"{self.input_dir}/{METADATA}: no training split")
        return lists["train"], lists["val"], lists["test"], list(metadata["class_names"])

    def make_dataset(
        self, images: ImageList, train: bool, size: int, resize: int, skip_bad_images: bool
    ) -> ImageFileDataset:
        if self.predict_source is not None and images is self.splits["predict"]:  # local files
            return super().make_dataset(images, train, size, resize, skip_bad_images)
        split = images.source.rsplit("/", 1)[-1]
        return StreamingImageDataset(
            images,
            f"{self.input_dir}/{split}",
            self.cache_dir,
            self.max_cache_size,
            train=train,
            size=size,
            resize=resize,
            skip_bad_images=skip_bad_images,
        )


def main(argv: list[str] | None = None) -> None:
    """``python -m ltlight.data.files.streaming --data <dataset.yaml> --output_dir <folder>``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(description="Convert a file datamodule to LitData's format.")
    parser.add_argument("--data", type=FileLongTailDataModule, required=True)
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--chunk_bytes", type=str, default="64MB")
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, value in enumerate(argv[:-1]):
        if value == "--data" and os.path.isfile(argv[i + 1]):  # a dataset's recipe in configs/
            with open(argv[i + 1]) as f:
                config = yaml.safe_load(f)
            argv[i + 1] = yaml.safe_dump(config if "class_path" in config else config["data"])
    config = parser.instantiate_classes(parser.parse_args(argv))
    metadata = convert(config.data, config.output_dir, config.num_workers, config.chunk_bytes)
    sizes = ", ".join(f"{split} {len(labels)}" for split, labels in metadata["labels"].items())
    print(
        f"{config.output_dir}: {len(metadata['class_names'])} classes; {sizes} images; "
        f"read it with StreamingLTDataModule(input_dir={config.output_dir!r})"
    )


if __name__ == "__main__":
    main()
