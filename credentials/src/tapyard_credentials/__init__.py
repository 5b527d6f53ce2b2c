"""tapyard_credentials: the tapyard credential vault (built in issue 4)."""

__version__ = "0.1.0"
