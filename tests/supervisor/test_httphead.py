"""The supervisor's request-head reader and sid scheme, without sockets."""

import pytest

from siopg.supervisor.httphead import HeadError, parse_head
from siopg.supervisor.sid import make_sid_generator, worker_of


def test_complete_head_with_sid():
    buf = b"GET /socket.io/?EIO=4&transport=polling&sid=3.abc HTTP/1.1\r\nHost: x\r\n\r\nBODY"
    head = parse_head(buf)
    assert head is not None
    assert (head.method, head.path, head.sid) == ("GET", "/socket.io/", "3.abc")
    assert buf[head.head_size :] == b"BODY"


def test_incomplete_head_needs_more():
    assert parse_head(b"GET /socket.io/?EIO=4 HTTP/1.1\r\nHost: x\r\n") is None
    assert parse_head(b"GE") is None
    assert parse_head(b"") is None


def test_no_sid_and_percent_encoded_sid():
    assert parse_head(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n\r\n").sid is None
    assert parse_head(b"GET /x?sid=1%2Eab HTTP/1.1\r\n\r\n").sid == "1.ab"
    assert parse_head(b"GET /x?xsid=1.ab HTTP/1.1\r\n\r\n").sid is None


def test_leading_empty_lines_are_ignored():
    assert parse_head(b"\r\nGET / HTTP/1.1\r\n\r\n").path == "/"


@pytest.mark.parametrize(
    "garbage",
    [b"\x16\x03\x01\x02\x00", b"hello world\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n", b"GET  / HTTP/1.1\r\n\r\n",
     b"GET /\x01 HTTP/1.1\r\n\r\n", b"\x00\x00\x00\x00", b"get / HTTP/1.1\r\n\r\n"],
)
def test_garbage_is_refused(garbage):
    with pytest.raises(HeadError) as err:
        parse_head(garbage)
    assert err.value.status in (400, 505)


def test_garbage_is_refused_before_a_line_ends():
    with pytest.raises(HeadError):
        parse_head(b"\x16\x03\x01")  # a TLS ClientHello on the plain port


def test_oversized_head():
    big = b"GET / HTTP/1.1\r\nX: " + b"a" * 20000
    with pytest.raises(HeadError) as err:
        parse_head(big, max_size=16384)
    assert err.value.status == 431
    with pytest.raises(HeadError):
        parse_head(b"GET /" + b"a" * 20000, max_size=16384)


def test_sid_names_its_worker():
    gen = make_sid_generator(7)
    sids = {gen() for _ in range(1000)}
    assert len(sids) == 1000
    assert all(worker_of(s) == 7 for s in sids)
    assert all(len(s) == 22 for s in sids)


@pytest.mark.parametrize("sid", ["", "abc", ".abc", "7.", "x7.abc", "١.abc", "1234567890.abc", "-1.a"])
def test_foreign_sids_name_no_worker(sid):
    assert worker_of(sid) is None


def test_sid_with_a_node_name():
    sid = make_sid_generator(12, "b2")()
    assert sid.startswith("b2-12.")
    assert worker_of(sid) == 12
    with pytest.raises(ValueError):
        make_sid_generator(1, "Bad.Node")


def test_a_line_longer_than_the_workers_limit_is_refused_here():
    """A head under the 16 KiB bound whose one header or request line is over aiohttp's 8190
    bytes would pass the supervisor and make the worker log a traceback per request."""
    long_header = b"GET /socket.io/?EIO=4 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    with pytest.raises(HeadError) as err:
        parse_head(long_header)
    assert err.value.status == 431
    long_target = b"GET /socket.io/?EIO=4&x=" + b"b" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    with pytest.raises(HeadError) as err:
        parse_head(long_target)
    assert err.value.status == 414
    fine = b"GET /socket.io/?EIO=4 HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"c" * 4000) for i in range(3)) + b"\r\n"
    assert parse_head(fine) is not None  # many long-ish lines, each under the limit
