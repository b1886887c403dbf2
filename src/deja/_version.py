"""The version of deja (one place, read by the build)."""

__version__ = "0.13.0"
