"""Augury: an AI inference system for language models and predictive models."""

__version__ = "0.1.0"
