"""Red team 9: malformed `Authorization` headers at the dashboard and at /metrics.

Real `siopg serve` processes with `--dashboard-auth` / `--metrics-auth`. Bytes outside ASCII in a
basic-auth header made base64 raise ValueError (not binascii.Error): a 500 and a traceback per
request from the single server, a 503 and a traceback per request from the supervisor's router.
Every malformed header must be a plain 401, and the right credentials must still get in.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import pytest

from hostile.server_fixtures import HOSTILE_APPS, serve
from hostile.supervisor_helpers import STANDIN_APP, supervisors  # noqa: F401
from siopg.dashboard.auth import basic_matches

GOOD = "Basic " + base64.b64encode(b"ops:s3cret").decode()
MALFORMED = [
    b"Basic \xc3\xa9\xc3\xa9",               # UTF-8, not base64
    b"Basic Zm9v\xff",                        # a byte no text encoding agrees on
    b"Basic " + base64.b64encode(b"ops"),     # no colon
    b"Basic !!!notbase64",
    b"Basic",
    b"Bearer " + base64.b64encode(b"ops:s3cret"),
    b"Basic " + base64.b64encode("öps:s3crét".encode()),
    b"Basic " + base64.b64encode(b"\xff\xfe:\xff"),  # decodes to no UTF-8
    b"Basic " + b"A" * 6000,
]


def _get(port: int, path: str, authorization: bytes | None) -> bytes:
    head = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if authorization is not None:
        head += b"Authorization: " + authorization + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + b"\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("header", ["Basic Zm9v\udcff", "Basic é", "Basic Zm9v\x00"])
def test_basic_matches_refuses_non_ascii_headers(header):
    assert basic_matches(header, "ops", "s3cret") is False


@pytest.fixture(scope="module")
def guarded_server() -> Iterator[object]:
    yield from serve(HOSTILE_APPS / "server_recovery.py", "--dashboard", "--dashboard-auth", "ops:s3cret",
                     "--metrics", "--metrics-auth", "ops:s3cret")


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/stats.json", "/metrics"])
def test_malformed_authorization_is_a_401_from_the_server(guarded_server, path):
    port = guarded_server.port  # type: ignore[attr-defined]
    for header in MALFORMED:
        assert _status(_get(port, path, header)) == 401, header
    assert _status(_get(port, path, None)) == 401
    assert _status(_get(port, path, GOOD.encode())) == 200
    # the fixture's teardown fails on any traceback in the server's log


def test_malformed_authorization_is_a_401_from_the_supervisor(supervisors):  # noqa: F811 - fixture
    sv = supervisors(STANDIN_APP, 1, "--metrics", "--metrics-auth", "ops:s3cret")
    sv.wait_serving(60)
    for header in MALFORMED:
        assert _status(_get(sv.port, "/metrics", header)) == 401, header
    assert _status(_get(sv.port, "/metrics", GOOD.encode())) == 200
    assert not [line for line in sv.lines if "Traceback" in line or "routing failed" in line], sv.lines[-40:]
