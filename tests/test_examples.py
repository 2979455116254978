"""Every ``Example:`` in ltlight's docstrings runs and prints what it shows (STYLE.md)."""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import ltlight


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(ltlight.__path__, prefix="ltlight."):
        spec = importlib.util.find_spec(info.name)
        if spec and spec.origin and ">>>" in Path(spec.origin).read_text(encoding="utf-8"):
            names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_some_docstring_examples_exist():
    assert "ltlight.data.profiles" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
