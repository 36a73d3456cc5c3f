"""What a user-given callback URL may look like: defined with the request contracts, which
validate `notify_url` with it (service/contracts/urls.py), and named here for the outbound
clients."""

from __future__ import annotations

from service.contracts.urls import MAX_URL_LENGTH, check_http_url

__all__ = ["MAX_URL_LENGTH", "check_http_url"]
