"""``python -m tapyard``: the same as the ``tapyard`` command."""

from tapyard.cli import entry

entry()
