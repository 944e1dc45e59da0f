"""Streaming inference: stateful sessions over continuous data with sliding windows.

The path of an event: server/streams.py (WebSocket frames, auth) -> manager.py (sessions) ->
session.py (queue, worker; SessionCore: dedup -> windows.py reorder + windows -> features.py ->
models.py) -> a result frame per window. See README's "Streaming inference" section.
"""
