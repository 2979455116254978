"""An in-memory multi-label long-tailed dataset for the tests: features whose labels a linear
layer can learn, label frequencies falling from head to tail, a few unknown (NaN) targets.

``MultiLabelTensorDataModule`` is a user's own datamodule as the multi-label contract asks:
``multi_label = True``, ``class_counts`` (training positives per class), ``num_train_samples``
and plain DataLoaders of ``(features, float targets (N, C))``.
"""

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

FEATURES = 8
RATES = (0.6, 0.35, 0.2, 0.08, 0.03)  # positive rate per class: head → tail
C = len(RATES)
CLASS_NAMES = ["person", "car", "dog", "boat", "sofa"]


def multilabel_tensors(
    n: int, seed: int, unknown: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` feature vectors and their float targets; a fraction ``unknown`` of them NaN."""
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(C, FEATURES, generator=torch.Generator().manual_seed(1234))
    target = (torch.rand(n, C, generator=gen) < torch.tensor(RATES)).float()
    features = (target * 2 - 1) @ directions + 0.8 * torch.randn(n, FEATURES, generator=gen)
    if unknown:
        target[torch.rand(n, C, generator=gen) < unknown] = float("nan")
    return features, target


class MultiLabelTensorDataModule(L.LightningDataModule):
    """Training 400 images (5 % unknown entries), validation ``val_size``, test 150."""

    multi_label = True
    class_names = CLASS_NAMES

    def __init__(self, val_size: int = 150, batch_size: int = 32, declare: bool = True) -> None:
        super().__init__()
        self.train_set = TensorDataset(*multilabel_tensors(400, seed=0, unknown=0.05))
        self.val_set = TensorDataset(*multilabel_tensors(val_size, seed=1, unknown=0.05))
        self.test_set = TensorDataset(*multilabel_tensors(150, seed=2))
        self.batch_size = batch_size
        if declare:
            positives = self.train_set.tensors[1].nan_to_num(0.0).sum(0)
            self.class_counts = [int(n) for n in positives]
            self.num_train_samples = len(self.train_set)
            self.num_classes = C
        else:  # a plain datamodule: the module must notice float (N, C) targets itself
            self.multi_label = False

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=64)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=64)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=64)
