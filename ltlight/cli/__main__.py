"""``python -m ltlight.cli ...`` is the ``ltlight`` command (what torchrun's ``-m`` needs)."""

from ltlight.cli import main

main()
