"""The file pipeline: images stored as files, decoded by worker processes.

``datamodule`` (:class:`FileLongTailDataModule`, a dataset only says how to read its lists),
``image_list`` (the lists and their readers: folder scan, CSV, split file, COCO JSON),
``folder_scan`` (the image files below a folder: hidden names skipped, links kept inside),
``dataset`` (decoding and crop boxes of one image), ``loader`` (:class:`FileDataLoader`),
``color_jitter``, and the datamodules: ``folder`` (your own data), ``split_files``
(ImageNet-LT, Places-LT), ``inaturalist``, ``streaming`` (LitData).
"""
