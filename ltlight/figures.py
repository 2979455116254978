"""What people look at after a run: per-class error chart, reliability diagram, terminal table.

Inputs are the entries of :meth:`ltlight.metrics.LongTailMetrics.compute` (tensors or sequences).
Figures are built on :class:`matplotlib.figure.Figure` directly, not through ``pyplot``: no global
figure registry to leak into or close, and no backend to switch (they render with Agg), so the
functions are safe to call from a training run and from a notebook alike.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter
from rich.table import Table
from torch import Tensor

from ltlight.metrics import SHOT_GROUPS, check_thresholds, shot_groups

#: Bar colour per shot group (many, medium, few) and for classes with unknown training counts.
GROUP_COLORS = {"many": "#4c72b0", "medium": "#dd8452", "few": "#c44e52", None: "#8c8c8c"}
#: Rich styles for the group column of :func:`per_class_table`.
GROUP_STYLES = {"many": "blue", "medium": "yellow", "few": "red"}
#: Tick labels are drawn for at most this many classes; beyond, the axis would be unreadable.
MAX_LABELLED_CLASSES = 30

_SUMMARY_LABELS = {
    "error": "overall error",
    "balanced_error": "balanced error",
    "many_shot_error": "many-shot error",
    "medium_shot_error": "medium-shot error",
    "few_shot_error": "few-shot error",
    "ece": "ECE",
    "classwise_ece": "classwise ECE",
    "nll": "NLL",
    "brier": "Brier score",
    "map": "mAP",
    "head_map": "head mAP",
    "medium_map": "medium mAP",
    "tail_map": "tail mAP",
    "auroc": "macro AUROC",
    "micro_f1": "micro F1",
    "macro_f1": "macro F1",
    **{
        f"{g}_shot_{k}": f"{g}-shot {label}"
        for g in SHOT_GROUPS
        for k, label in (
            ("ece", "ECE"),
            ("classwise_ece", "classwise ECE"),
            ("nll", "NLL"),
            ("brier", "Brier"),
        )
    },
}
#: Summary entries that are not fractions (printed as numbers, not percentages).
_PLAIN_NUMBERS = {key for key in _SUMMARY_LABELS if key.endswith(("nll", "brier"))}


def _numpy(values: Tensor | Sequence[float]) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def head_to_tail_order(class_counts: Tensor | Sequence[int] | None, num_classes: int) -> np.ndarray:
    """Class indices from the most to the least frequent training class (ties by index)."""
    if class_counts is None:
        return np.arange(num_classes)
    return np.argsort(-_numpy(class_counts), kind="stable")


def _group_names(
    class_counts: Tensor | Sequence[int] | None,
    num_classes: int,
    many_threshold: int,
    few_threshold: int,
) -> list[str | None]:
    if class_counts is None:
        return [None] * num_classes
    groups = shot_groups(torch.as_tensor(class_counts), many_threshold, few_threshold)
    return [SHOT_GROUPS[g] for g in groups.tolist()]


def _check_lengths(per_class_error: np.ndarray, class_counts, class_names) -> None:
    num_classes = len(per_class_error)
    if class_counts is not None and len(class_counts) != num_classes:
        raise ValueError(
            f"class_counts has {len(class_counts)} entries but per_class_error has {num_classes}"
        )
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} entries but per_class_error has {num_classes}"
        )


def _per_class_inputs(per_class_error, class_counts, class_names, many_threshold, few_threshold):
    """Checked per-class inputs: errors, head-to-tail order, shot-group names, class names."""
    check_thresholds(many_threshold, few_threshold)
    errors = _numpy(per_class_error)
    _check_lengths(errors, class_counts, class_names)
    num_classes = len(errors)
    order = head_to_tail_order(class_counts, num_classes)
    groups = _group_names(class_counts, num_classes, many_threshold, few_threshold)
    names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
    return errors, order, groups, names


def _group_legend_label(name: str, many_threshold: int, few_threshold: int) -> str:
    return {
        "many": f"many-shot (> {many_threshold})",
        "medium": f"medium-shot ({few_threshold}–{many_threshold})",
        "few": f"few-shot (< {few_threshold})",
    }[name]


def per_class_error_figure(
    per_class_error: Tensor | Sequence[float],
    class_counts: Tensor | Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    many_threshold: int = 100,
    few_threshold: int = 20,
    title: str = "Per-class error",
    value_name: str = "error",
    mean_name: str = "balanced error",
) -> Figure:
    """Bar chart of per-class error, classes ordered by training count (head → tail).

    Bars are coloured by shot group; the training count of each class is drawn as a line on a
    logarithmic right axis (and under the class name when there are at most
    :data:`MAX_LABELLED_CLASSES` classes); a dashed line marks the balanced error (the mean of
    the bars). A class without evaluation samples (NaN error) has no bar.

    Args:
        per_class_error: ``(C,)`` errors in [0, 1].
        class_counts: training samples per class; ``None`` keeps class order and grey bars.
        class_names: tick labels; class indices by default.
        many_threshold: many-shot means more training samples than this.
        few_threshold: few-shot means fewer training samples than this.
        title: the axes title.
        value_name: what the bars are (multi-label: ``"AP"``).
        mean_name: what their mean is (multi-label: ``"mAP"``).
    """
    errors, order, groups, names = _per_class_inputs(
        per_class_error, class_counts, class_names, many_threshold, few_threshold
    )
    num_classes = len(errors)
    positions = np.arange(num_classes)

    width = min(max(6.0, 0.3 * num_classes + 2.5), 20.0)
    fig = Figure(figsize=(width, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(positions, errors[order], width=0.8, color=[GROUP_COLORS[groups[i]] for i in order])
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.set_ylabel(value_name)
    ax.set_xlim(-0.6, num_classes - 0.4)
    ax.set_title(title)
    handles: list = []
    if np.isfinite(errors).any():
        balanced = float(np.nanmean(errors))
        label = f"{mean_name} {balanced:.1%}"
        handles.append(ax.axhline(balanced, color="black", linestyle="--", lw=1, label=label))

    if class_counts is None:
        ax.set_xlabel("class")
        labels = [names[i] for i in order]
    else:
        counts = _numpy(class_counts)
        ax.set_xlabel("class (training samples), head → tail")
        labels = [f"{names[i]}\n{int(counts[i])}" for i in order]
        count_axis = ax.twinx()
        count_axis.set_yscale("log")
        count_axis.set_ylabel("training samples")
        handles += count_axis.plot(
            positions, counts[order], color="black", marker=".", lw=1, label="training samples"
        )
        handles += [
            Patch(
                color=GROUP_COLORS[g], label=_group_legend_label(g, many_threshold, few_threshold)
            )
            for g in SHOT_GROUPS
            if g in groups
        ]
    if num_classes <= MAX_LABELLED_CLASSES:
        ax.set_xticks(positions, labels, fontsize="small")
    else:
        ax.set_xticks([])
    if handles:
        # Below the axes: bars may reach 100% and the count line crosses the whole width.
        columns = max(1, min(len(handles), int(width // 2.4)))
        fig.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize="small")
    return fig


def reliability_figure(
    bin_confidence: Tensor | Sequence[float],
    bin_accuracy: Tensor | Sequence[float],
    bin_count: Tensor | Sequence[int],
    ece: Tensor | float | None = None,
    title: str = "Reliability diagram",
    calibration: Mapping[str, Tensor | float] | None = None,
) -> Figure:
    """The reliability diagram of Guo et al. (ICML 2017), with the confidence histogram below.

    Top: accuracy per equal-width confidence bin (bars), the gap to the bin's mean confidence
    (hatched, red), and the diagonal of perfect calibration. Bottom: the fraction of samples per
    bin, with the overall accuracy and mean confidence. Empty bins draw nothing.

    Args:
        bin_confidence: ``(n_bins,)`` mean confidence per bin (NaN or anything for empty bins).
        bin_accuracy: ``(n_bins,)`` accuracy per bin.
        bin_count: ``(n_bins,)`` samples per bin.
        ece: written in the corner when given.
        title: the figure title.
        calibration: ``classwise_ece``, ``nll``, ``brier`` (any of them), written under the ECE.
    """
    confidence = _numpy(bin_confidence)
    accuracy = _numpy(bin_accuracy)
    count = _numpy(bin_count)
    if not len(confidence) == len(accuracy) == len(count):
        raise ValueError(
            "bin_confidence, bin_accuracy and bin_count must have the same length, got "
            f"{len(confidence)}, {len(accuracy)} and {len(count)}"
        )
    n_bins = len(count)
    edges = np.linspace(0, 1, n_bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    width = 1 / n_bins
    filled = count > 0

    fig = Figure(figsize=(5.0, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.bar(
        centers[filled],
        accuracy[filled],
        width=width,
        color="#4c72b0",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    gap = confidence[filled] - accuracy[filled]
    top.bar(
        centers[filled],
        gap,
        bottom=accuracy[filled],
        width=width,
        color="#c44e52",
        alpha=0.35,
        edgecolor="#c44e52",
        hatch="//",
        linewidth=0.5,
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(title)
    top.legend(loc="upper left", fontsize="small")
    caption = [] if ece is None else [f"ECE = {float(ece):.2%}"]
    for key, text in (
        ("classwise_ece", "classwise ECE = {:.2%}"),
        ("nll", "NLL = {:.3f}"),
        ("brier", "Brier = {:.3f}"),
    ):
        if calibration is not None and key in calibration:
            caption.append(text.format(float(calibration[key])))
    if caption:
        top.text(
            0.97,
            0.03,
            "\n".join(caption),
            transform=top.transAxes,
            ha="right",
            va="bottom",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
        )

    total = count.sum()
    fraction = count / total if total > 0 else np.zeros_like(count)
    bottom.bar(centers, fraction, width=width, color="#8c8c8c", edgecolor="black", linewidth=0.5)
    if total > 0:
        mean_accuracy = float((accuracy[filled] * count[filled]).sum() / total)
        mean_confidence = float((confidence[filled] * count[filled]).sum() / total)
        bottom.axvline(mean_accuracy, color="#4c72b0", linestyle="--", label="accuracy")
        bottom.axvline(mean_confidence, color="#c44e52", linestyle=":", label="mean confidence")
        bottom.legend(loc="best", fontsize="small")
    bottom.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    bottom.set_ylabel("samples")
    bottom.set_xlabel("confidence (max probability)")
    return fig


def per_class_table(
    per_class_error: Tensor | Sequence[float],
    class_counts: Tensor | Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    many_threshold: int = 100,
    few_threshold: int = 20,
    summary: Mapping[str, Tensor | float] | None = None,
    title: str = "Per-class error",
    per_class_calibration_error: Tensor | Sequence[float] | None = None,
    value_name: str = "error",
) -> Table:
    """A rich table: one row per class (head → tail) and a summary section below.

    Columns: class, training count, shot group, error (and, when given, each class's
    calibration error, ``per_class_calibration_error`` of the metrics). ``summary`` takes the
    scalar entries of :meth:`~ltlight.metrics.LongTailMetrics.compute` (errors, ECE, classwise
    ECE, NLL, Brier score, overall and per shot group); the ones given and not NaN are listed
    after the classes (NLL and Brier as numbers, the rest in %); the multi-label ones
    (:data:`~ltlight.metrics.MULTILABEL_SCALAR_KEYS`) too, with ``value_name="AP"``.
    """
    errors, order, groups, names = _per_class_inputs(
        per_class_error, class_counts, class_names, many_threshold, few_threshold
    )
    counts = None if class_counts is None else _numpy(class_counts)

    table = Table(title=title)
    table.add_column("class")
    table.add_column("train n", justify="right")
    table.add_column("group")
    table.add_column(value_name, justify="right")
    calibration = None
    if per_class_calibration_error is not None:
        calibration = _numpy(per_class_calibration_error)
        table.add_column("calibration error", justify="right")
    for i in order:
        group = groups[i]
        cells = [
            names[i],
            "–" if counts is None else str(int(counts[i])),
            "–" if group is None else f"[{GROUP_STYLES[group]}]{group}[/]",
            _percent(errors[i]),
        ]
        table.add_row(*cells, *([] if calibration is None else [_percent(calibration[i])]))
    rows = [
        (label, float(summary[key]), key in _PLAIN_NUMBERS)
        for key, label in _SUMMARY_LABELS.items()
        if summary is not None and key in summary and not np.isnan(float(summary[key]))
    ]
    if rows:
        table.add_section()
        for label, value, plain in rows:
            shown = f"{value:.3f}" if plain else _percent(value)
            cells = [f"[bold]{label}[/]", "", "", f"[bold]{shown}[/]"]
            table.add_row(*cells, *([] if calibration is None else [""]))
    return table


def _percent(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.2%}"


def prior_shift_figure(
    errors: Mapping[str, Sequence[float]],
    prior_labels: Sequence[str],
    title: str = "Error under a shifted test prior",
) -> Figure:
    """Error against the test prior, one line per method.

    Args:
        errors: method name → its error (fraction) under each prior, in ``prior_labels``' order
            (see :func:`ltlight.metrics.shifted_priors`).
        prior_labels: the x-axis: ``"forward 50"`` … ``"uniform"`` … ``"backward 50"``.
        title: the axes title.
    """
    fig = Figure(figsize=(8.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(prior_labels))
    for name, values in errors.items():
        if len(values) != len(prior_labels):
            raise ValueError(
                f"{name} has {len(values)} errors but there are {len(prior_labels)} priors"
            )
        ax.plot(positions, _numpy(values), marker="o", label=name)
    ax.set_xticks(positions, list(prior_labels), rotation=45, ha="right", fontsize="small")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.set_ylabel("test error")
    ax.set_xlabel("test class prior (forward: head classes frequent, as in training)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return fig
