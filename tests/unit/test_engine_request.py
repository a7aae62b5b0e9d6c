"""Handshake request data kept per connection: header names are shared, not copied."""

from __future__ import annotations

from siopg.engine.request import header_name


def test_header_names_are_lower_cased_once_and_shared() -> None:
    first = header_name("Sec-WebSocket-Key")
    assert first == "sec-websocket-key"
    assert header_name("Sec-WebSocket-Key") is first  # every connection holds the same str
    assert header_name(b"User-Agent") == "user-agent" == header_name("User-Agent")
    assert header_name(b"X-\xe9") == "x-\xe9"  # bytes (ASGI) are latin-1
