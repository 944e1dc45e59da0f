"""The OpenAI-compatible API: protocol models, serving classes, routes."""
