"""EngineServer's request layer without sockets: verification, handshake, polling answers."""

from __future__ import annotations

import asyncio
import json

import pytest

from siopg.engine import (
    EngineOptions,
    EngineServer,
    EngineSocket,
    OutgoingMessage,
    RequestInfo,
)
from siopg.engine.errors import EngineError


def info(method: str = "GET", headers: dict[str, str] | None = None, **query: str) -> RequestInfo:
    return RequestInfo(headers=headers or {}, query=query, remote_address="127.0.0.1",
                       url="/engine.io/", secure=False, issued=0, method=method)


def body(data: bytes | None):  # type: ignore[no-untyped-def]
    async def read(limit: int) -> bytes | None:
        return None if data is None or len(data) > limit else data

    return read


@pytest.fixture
def engine() -> EngineServer:
    sockets: list[EngineSocket] = []
    server = EngineServer(sockets.append, EngineOptions(ping_interval=10, ping_timeout=10))
    server.test_sockets = sockets  # type: ignore[attr-defined]
    return server


async def handshake(engine: EngineServer) -> str:
    reply = await engine.handle_http(info(EIO="4", transport="polling"), body(b""))
    assert reply.status == 200
    return json.loads(reply.body[1:])["sid"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("req", "upgrade", "code"),
    [
        (info(EIO="4", transport="abc"), False, 0),
        (info(EIO="4"), False, 0),
        (info(EIO="4", transport="polling", sid="unknown"), False, 1),
        (info(EIO="4", transport="websocket", sid="unknown"), True, 1),
        (info("POST", EIO="4", transport="polling"), False, 2),
        (info(EIO="4", transport="websocket"), False, 3),
        (info(EIO="4", transport="polling", headers={"origin": "bad\x01origin"}), False, 3),
        (info(EIO="3", transport="polling"), False, 5),
        (info(transport="polling"), False, 5),
    ],
)
async def test_verify_refuses_bad_requests(engine: EngineServer, req: RequestInfo, upgrade: bool, code: int) -> None:
    with pytest.raises(EngineError) as err:
        await engine.verify(req, upgrade)
    assert err.value.code == code
    reply = engine.error_reply(err.value, req.headers)
    assert reply.status == 400 and json.loads(reply.body)["code"] == code


async def test_handshake_then_poll_and_post(engine: EngineServer) -> None:
    sid = await handshake(engine)
    socket = engine.test_sockets[0]  # type: ignore[attr-defined]
    received: list[str | bytes] = []
    socket.on_message = received.append
    reply = await engine.handle_http(info("POST", EIO="4", transport="polling", sid=sid), body(b"4abc"))
    assert (reply.status, reply.body) == (200, b"ok")
    assert received == ["abc"]
    poll = asyncio.ensure_future(engine.handle_http(info(EIO="4", transport="polling", sid=sid), body(b"")))
    await asyncio.sleep(0)
    assert not poll.done()
    socket.send([OutgoingMessage("x")])
    reply = await asyncio.wait_for(poll, 1)
    assert reply.body == b"4x"
    await engine.close()
    assert engine.sockets == {} and socket._timer is None


async def test_upgrade_for_a_polling_transport_name_is_refused(engine: EngineServer) -> None:
    sid = await handshake(engine)
    with pytest.raises(EngineError) as err:
        await engine.verify(info(EIO="4", transport="polling", sid=sid), upgrade=True)
    assert err.value.code == 3
    await engine.close()


async def test_oversized_post_is_413(engine: EngineServer) -> None:
    sid = await handshake(engine)
    reply = await engine.handle_http(info("POST", EIO="4", transport="polling", sid=sid), body(None))
    assert reply.status == 413
    assert sid not in engine.sockets


async def test_allow_request_and_closing_refuse(engine: EngineServer) -> None:
    def refuse(req: RequestInfo) -> None:
        raise ValueError("go away")

    server = EngineServer(lambda s: None, EngineOptions(allow_request=refuse))
    reply = await server.handle_http(info(EIO="4", transport="polling"), body(b""))
    assert reply.status == 403 and json.loads(reply.body) == {"code": 4, "message": "Forbidden"}
    await engine.close()
    reply = await engine.handle_http(info(EIO="4", transport="polling"), body(b""))
    assert reply.status == 400


def test_options_validation_and_cookie() -> None:
    with pytest.raises(ValueError):
        EngineOptions(transports=("carrier-pigeon",))
    with pytest.raises(ValueError):
        EngineOptions(transports=())
    assert EngineOptions(path="engine.io").path == "/engine.io/"
    assert EngineOptions(cookie=None).cookie_header("s") is None
    assert EngineOptions(cookie="sid").cookie_header("s") == "sid=s; Path=/; HttpOnly; SameSite=Lax"
    assert EngineOptions(cookie={"name": "io", "httponly": False, "samesite": "strict", "secure": True,
                                 "max_age": 60}).cookie_header("s") == "io=s; Max-Age=60; Path=/; Secure; SameSite=Strict"
    sid = EngineOptions().sid_generator()
    assert len(sid) == 20 and sid != EngineOptions().sid_generator()


def test_cors_star_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="cors_credentials"):
        EngineOptions(cors_allowed_origins="*", cors_credentials=True)
    # a list of origins with credentials, and "*" without, stay allowed
    EngineOptions(cors_allowed_origins=["https://a.example"], cors_credentials=True)
    star = EngineServer(lambda s: None, EngineOptions(cors_allowed_origins="*"))
    assert star.cors_headers({"origin": "https://evil.example"}) == [("Access-Control-Allow-Origin", "*")]


async def test_allow_request_exception_text_is_logged_clipped_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "postgresql://app:hunter2@db/prod " + "x" * 5000

    def refuse(req: RequestInfo) -> None:
        raise RuntimeError(secret)

    server = EngineServer(lambda s: None, EngineOptions(allow_request=refuse))
    with caplog.at_level("DEBUG", logger="siopg.engine"):
        reply = await server.handle_http(info(EIO="4", transport="polling"), body(b""))
    assert reply.status == 403 and json.loads(reply.body) == {"code": 4, "message": "Forbidden"}
    assert b"hunter2" not in reply.body
    logged = [r.getMessage() for r in caplog.records]
    assert any("hunter2" in m for m in logged)  # the operator still sees why
    assert all(len(m) < 1000 for m in logged)


async def test_allow_request_may_choose_its_engine_error() -> None:
    from siopg.engine.errors import Forbidden

    def refuse(req: RequestInfo) -> None:
        raise Forbidden("Token expired")

    server = EngineServer(lambda s: None, EngineOptions(allow_request=refuse))
    reply = await server.handle_http(info(EIO="4", transport="polling"), body(b""))
    assert reply.status == 403 and json.loads(reply.body) == {"code": 4, "message": "Token expired"}


async def test_refusal_log_lines_are_clipped(caplog: pytest.LogCaptureFixture) -> None:
    server = EngineServer(lambda s: None, EngineOptions())
    huge = "t" * 700_000
    with caplog.at_level("DEBUG", logger="siopg.engine"):
        reply = await server.handle_http(info(EIO="4", transport=huge, sid="s" * 700_000), body(b""))
        assert reply.status == 400
        reply = await server.handle_http(info(EIO="4", transport="polling", sid=huge), body(b""))
        assert reply.status == 400
    assert len(caplog.records) == 2
    assert all(len(r.getMessage()) < 1000 for r in caplog.records)


def poll_req(sid: str) -> RequestInfo:
    return info(EIO="4", transport="polling", sid=sid)


async def test_poll_answer_not_written_goes_back_to_the_queue(engine: EngineServer) -> None:
    """The binding could not write a poll answer (reply.undelivered): nothing is lost."""
    sid = await handshake(engine)
    socket = engine.test_sockets[0]  # type: ignore[attr-defined]
    poll = asyncio.ensure_future(engine.handle_http(poll_req(sid), body(b""), lambda: True))
    await asyncio.sleep(0)
    socket.send([OutgoingMessage("a"), OutgoingMessage("b")])
    reply = await asyncio.wait_for(poll, 1)
    assert reply.body == b"4a\x1e4b" and reply.undelivered is not None
    socket.send([OutgoingMessage("c")])
    reply.undelivered()  # e.g. the connection closed between the answer and its write
    reply = await engine.handle_http(poll_req(sid), body(b""))
    assert reply.body == b"4a\x1e4b\x1e4c"
    await engine.close()


async def test_dead_parked_get_gets_nothing(engine: EngineServer) -> None:
    sid = await handshake(engine)
    socket = engine.test_sockets[0]  # type: ignore[attr-defined]
    open_ = [True]
    poll = asyncio.ensure_future(engine.handle_http(poll_req(sid), body(b""), lambda: open_[0]))
    await asyncio.sleep(0)
    open_[0] = False  # the client went away
    socket.send([OutgoingMessage("kept")])
    reply = await asyncio.wait_for(poll, 1)
    assert reply.body == b"6" and reply.undelivered is None  # released with a noop
    reply = await engine.handle_http(poll_req(sid), body(b""))
    assert reply.body == b"4kept"
    assert sid in engine.sockets
    await engine.close()


async def test_poll_cancelled_after_its_answer_requeues(engine: EngineServer) -> None:
    sid = await handshake(engine)
    socket = engine.test_sockets[0]  # type: ignore[attr-defined]
    poll = asyncio.ensure_future(engine.handle_http(poll_req(sid), body(b"")))
    await asyncio.sleep(0)
    socket.send([OutgoingMessage("x")])
    socket.flush()  # answers the parked GET; its task has not run yet
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    reply = await engine.handle_http(poll_req(sid), body(b""))
    assert reply.body == b"4x"
    # a parked GET cancelled before any answer leaves the session open
    poll = asyncio.ensure_future(engine.handle_http(poll_req(sid), body(b"")))
    await asyncio.sleep(0)
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    assert sid in engine.sockets
    await engine.close()


async def test_post_body_timeout_and_session_close_end_the_read() -> None:
    closes: list[str] = []

    def on_connection(s: EngineSocket) -> None:
        s.on_close = lambda reason, desc: closes.append(f"{reason}: {desc}")

    server = EngineServer(on_connection, EngineOptions(http_body_timeout=0.05))
    sid = await handshake(server)

    async def slow(limit: int) -> bytes | None:
        await asyncio.sleep(3600)
        return b""

    reply = await asyncio.wait_for(server.handle_http(info("POST", EIO="4", transport="polling", sid=sid), slow), 2)
    assert reply.status == 400 and reply.close
    assert closes == ["transport error: request body timeout"]
    # no timeout, but the session closes while the body is read: the read ends at once
    server2 = EngineServer(on_connection, EngineOptions(http_body_timeout=None))
    sid = await handshake(server2)
    post = asyncio.ensure_future(server2.handle_http(info("POST", EIO="4", transport="polling", sid=sid), slow))
    await asyncio.sleep(0.01)
    assert not post.done()
    server2.sockets[sid]._session.close(discard=True)
    reply = await asyncio.wait_for(post, 1)
    assert reply.status == 400 and reply.close
    with pytest.raises(ValueError):
        EngineOptions(http_body_timeout=0)
