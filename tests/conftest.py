"""The shared fixtures come from the ``tapyard.testing`` pytest plugin (loaded
by ``-p tapyard.testing`` in the root pytest configuration), so that the
connectors' own tests get the same network guard, fake credentials and
isolation as these."""
