"""Unit tier: no model training and no ../shared; runs alone with `pytest -m "not integration"`."""
