"""Batch inference jobs: large files through any model, resumable (see job.py)."""
