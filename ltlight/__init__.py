"""ltlight: PyTorch Lightning parts for long-tailed (class-imbalanced) classification."""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["LongTailModule", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import ltlight.losses` does not pay for Lightning's import.
    if name == "LongTailModule":
        return import_module("ltlight.module").LongTailModule
    raise AttributeError(f"module 'ltlight' has no attribute {name!r}")
