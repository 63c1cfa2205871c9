"""Minimal ONNX Runtime services for the peers; each file runs inside its peer's own virtualenv only."""
