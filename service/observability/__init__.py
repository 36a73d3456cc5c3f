"""Metrics, health endpoints and tracing: how Ferry's processes are watched."""
