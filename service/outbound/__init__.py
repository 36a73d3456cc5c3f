"""Outbound HTTP to URLs users choose (webhook endpoints, notify URLs, later import sources):
what such a URL may look like, and the SSRF guard that checks every connection Ferry opens."""
