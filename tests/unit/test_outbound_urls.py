"""Callback URLs: absolute http(s), a host, no credentials, no spaces, a sane length."""

from __future__ import annotations

import pytest

from service.outbound.urls import MAX_URL_LENGTH, check_http_url


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/ferry",
        "http://127.0.0.1:8080/hook?token=abc",
        "https://[2606:4700::1111]/x",
        "https://exämple.com/ü",
    ],
)
def test_http_urls_are_kept_as_given(url: str) -> None:
    assert check_http_url(url) == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("/relative/path", "http:// or https://"),
        ("http:///no-host", "must name a host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://exa mple.com/", "spaces"),
        ("https://example.com/\n", "spaces"),
        ("http://example.com:99999/", "out of range"),
        ("http://[::1/", "not a valid URL"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, "at most"),
    ],
)
def test_anything_else_is_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_http_url(url)
