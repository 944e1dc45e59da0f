"""Example models built from real data that ships inside packages (see build.py)."""
