"""The cache core; scripts/unasync.py makes the sync twin of each module here."""
