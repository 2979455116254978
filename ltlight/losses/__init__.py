"""Losses for long-tailed classification; every one shares :class:`LongTailLoss`'s weight and reduction."""

from ltlight.losses.base import LongTailLoss

__all__ = ["LongTailLoss"]
