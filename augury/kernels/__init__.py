"""Hand-written CPU kernels, compiled on first use; every caller has a pure-torch fallback."""
