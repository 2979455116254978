"""The part every ltlight metric shares: classes split into shot groups by training counts."""

from collections.abc import Sequence

from torch import Tensor
from torchmetrics import Metric

from ltlight._lightning_internals import forget_computed
from ltlight.metrics.functional import check_metric_arguments


class ShotGroupedMetric(Metric):
    """A torchmetrics ``Metric`` over ``num_classes`` classes whose training counts define the
    many-shot (> ``many_threshold``), medium and few-shot (< ``few_threshold``) groups.

    Subclasses add their states and ``update`` / ``compute``; the counts may come later
    (:meth:`set_class_counts`, once the datamodule knows them).
    """

    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[int] | None = None,
        many_threshold: int = 100,
        few_threshold: int = 20,
        n_bins: int = 15,
    ) -> None:
        super().__init__()
        check_metric_arguments(num_classes, n_bins, many_threshold, few_threshold)
        self.num_classes = num_classes
        self.many_threshold = many_threshold
        self.few_threshold = few_threshold
        self.n_bins = n_bins
        self.class_counts: Tensor | None = None
        if class_counts is not None:
            self.set_class_counts(class_counts)

    def set_class_counts(self, class_counts: Sequence[int] | Tensor) -> None:
        """Set the training counts per class (positives, for labels) that define the groups."""
        self.class_counts = check_metric_arguments(
            self.num_classes, self.n_bins, self.many_threshold, self.few_threshold, class_counts
        )
        forget_computed(self)  # torchmetrics' cached compute() result used the old counts
