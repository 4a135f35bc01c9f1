"""One package per service; each runs as its own OS process (see shared/catalog.py)."""
