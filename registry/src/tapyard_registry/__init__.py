"""tapyard_registry: the tapyard marketplace server.

Not built yet: the marketplace comes after the open issues. This distribution
exists so the workspace layout is in place; it has no features.
"""

__version__ = "0.1.0"
