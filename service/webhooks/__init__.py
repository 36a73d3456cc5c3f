"""Webhooks: endpoints and the project's signing secret, durable deliveries recorded from status
events, and the dispatcher that sends them, signed and retried, through the SSRF guard."""
