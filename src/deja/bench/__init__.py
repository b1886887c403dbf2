"""Evaluation entry points that ship with deja (``python -m deja.bench.semantic``)."""
