"""Serving: the app state, health, drain, metrics, gunicorn workers and the GC policy."""
