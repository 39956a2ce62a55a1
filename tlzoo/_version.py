"""The package version, in one place (imported without importing TensorFlow)."""
__version__ = "0.1.0"
