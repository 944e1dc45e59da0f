"""The web playground and dashboard: static pages served at `/`, and the JSON they read
(`/api/stats`, `/api/jobs`, `/api/streams`)."""
