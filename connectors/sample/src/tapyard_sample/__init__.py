"""The tapyard sample connector (being built)."""
