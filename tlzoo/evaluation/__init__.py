"""Metrics, operating-point thresholds and the plots written next to them."""
