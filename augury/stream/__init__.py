"""Streaming inference: stateful sessions over continuous data with sliding windows.

The path of an event: server/streams.py (WebSocket frames, auth) -> manager.py (sessions) ->
session.py (queue, outbox; SessionCore: dedup -> windows.py reorder + windows) ->
scheduler.py (one step for every session with queued events: features.py for all their
windows at once -> models.py per session) -> a result frame per window. See README's
"Streaming inference" section.
"""
