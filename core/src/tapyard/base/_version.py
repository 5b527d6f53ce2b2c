"""The version of this core, in a module of its own: the facade (``tapyard.__version__``)
and the plugin layer (which checks what a plugin's package says it supports) read it
here, so that neither imports the other for it."""

from __future__ import annotations

__all__ = ["CORE_VERSION"]

#: This core's version (``tapyard.__version__``); the distribution's metadata says the same.
CORE_VERSION = "0.1.0"
