"""Deployment: exports (SavedModel, ONNX, TFLite) with parity checks, model card, manifest, and ``predict``."""
