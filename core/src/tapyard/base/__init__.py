"""The lowest layer of the core: the nouns, errors, config and the manifest model shared by every other part."""
