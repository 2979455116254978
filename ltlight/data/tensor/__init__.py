"""The in-memory pipeline: small datasets held as one uint8 tensor on the training device.

``datamodule`` (:class:`LongTailDataModule`, a dataset only says how to load its arrays),
``loader`` (:class:`DeviceDataLoader`), ``augment`` (crop / flip / normalisation of whole batches
on the device) and one file per dataset: ``digits``, ``cifar``, ``fashion_mnist``.
"""
