"""Training utilities for HILBERT: whole-set evaluation metrics (`training.metrics`) and report plots (`training.plots`)."""
