"""Distillation: frozen teachers (`teachers.py`) and their on-disk cache (`cache.py`)."""
