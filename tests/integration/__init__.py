"""Integration tier: trains or fine-tunes models, runs commands end to end, or reads ../shared."""
