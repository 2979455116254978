"""Digits-LT datamodules with broken data, for the bad-input sweep (``test_bad_inputs.py``).

Usable from the command line as ``--data=bad_data.<Name>`` while ``tests/`` is importable.
"""

from torch import Tensor

from ltlight.data import DigitsLTDataModule


class TestLabelsOutOfRange(DigitsLTDataModule):
    """The test split's last image is labelled 10 in a 10-class dataset."""

    __test__ = False  # not a pytest test class

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        images, labels = super().load_split(train)
        if not train:
            labels = labels.clone()
            labels[-1] = self.num_classes
        return images, labels


class NegativeTrainingLabel(DigitsLTDataModule):
    """One training image is labelled -1."""

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        images, labels = super().load_split(train)
        if train:
            labels = labels.clone()
            labels[0] = -1
        return images, labels


class EmptyClass(DigitsLTDataModule):
    """The training pool has no image of class 9, though the profile asks for some."""

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        images, labels = super().load_split(train)
        if train:
            keep = labels != 9
            images, labels = images[keep], labels[keep]
        return images, labels


class SetupFails(DigitsLTDataModule):
    """Set-up raises a ValueError worded like a jsonargparse report (as a library's own check
    may be) that is not about a command-line argument."""

    def setup(self, stage: str | None = None) -> None:
        raise ValueError(
            "first line of the real cause\nDoes not validate against any of the Union subtypes\n"
            "  - second line, kept\n  - third\n  - fourth"
        )
