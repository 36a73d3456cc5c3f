"""Exports: from a request to a file in the object store."""
