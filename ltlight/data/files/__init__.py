"""The file pipeline: images stored as files, decoded by worker processes.

``datamodule`` (:class:`FileLongTailDataModule`, a dataset only says how to read its lists),
``image_list`` (the lists and their readers: folder scan, CSV, split file, COCO JSON),
``folder_scan`` (the image files below a folder: hidden names skipped, links kept inside),
``dataset`` (decoding and crop boxes of one image), ``loader`` (:class:`FileDataLoader`),
``color_jitter``, ``multilabel`` (multi-label CSV readers), and the datamodules: ``folder`` (your
own data, single- or multi-label), ``split_files`` (ImageNet-LT, Places-LT), ``inaturalist``,
``voc_coco_mlt`` (VOC-MLT, COCO-MLT), ``chestxray14``, ``streaming`` (LitData).
"""
