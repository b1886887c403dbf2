"""The version of deja (one place, read by the build)."""

__version__ = "0.14.0"
