"""The dashboard against a real siopg server (aiohttp on port 0) and python-socketio clients."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import socketio
from aiohttp import web

import siopg
from siopg import dashboard
from siopg.adapter.errors import RECOVERY_CAUSES
from siopg.dashboard.cluster import recovery
from siopg.dashboard.stats import Identity, Reading, Sampler

from .helpers import start_app

NO_FAILURES = dict.fromkeys(sorted(RECOVERY_CAUSES), 0)  # every cause counted, none yet


Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def served() -> AsyncIterator[Serve]:
    """serve(io, **setup_kwargs) -> base URL; everything started is stopped afterwards."""
    runners: list[web.AppRunner] = []

    async def serve(io: siopg.Server, app: web.Application | None = None, **kwargs: Any) -> str:
        if app is None:
            app = io.aiohttp_app()
            dashboard.setup(io, app, **kwargs)
        runner, port = await start_app(app)
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def clients() -> AsyncIterator[list[socketio.AsyncClient]]:
    made: list[socketio.AsyncClient] = []
    yield made
    for client in made:
        await client.disconnect()


def chat_server() -> siopg.Server:
    io = siopg.Server()

    @io.on("connection")
    def on_connection(socket: siopg.Socket) -> None:
        socket.join("lobby")

        @socket.on("say")
        async def say(text: str) -> None:
            await io.to("lobby").emit("said", text)

    io.of("/chat").on("connection", lambda socket: socket.join(["red", "blue"]))
    return io


async def connect(
    made: list[socketio.AsyncClient], url: str, transport: str, namespaces: list[str] | None = None
) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=[transport], namespaces=namespaces or ["/"], wait_timeout=5)
    made.append(client)
    return client


async def stats(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> dict[str, Any]:
    async with http.get(f"{url}/dashboard/stats.json", **kwargs) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        return await resp.json()


async def stats_until(
    http: aiohttp.ClientSession, url: str, check: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    """Poll like the page does until `check` holds (readings are shared for half a second)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        doc = await stats(http, url)
        if check(doc) or asyncio.get_running_loop().time() > deadline:
            return doc
        await asyncio.sleep(0.2)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in doc["namespaces"]}


async def test_stats_reflect_websocket_and_polling_clients(
    served: Serve, http: aiohttp.ClientSession, clients: list[socketio.AsyncClient]
) -> None:
    io = chat_server()
    url = await served(io)
    ws = await connect(clients, url, "websocket", ["/", "/chat"])
    await connect(clients, url, "polling")
    await connect(clients, url, "polling", ["/chat"])

    doc = await stats(http, url)
    assert doc["server_count"] == 1
    assert doc["engine"]["by_transport"] == {"polling": 2, "websocket": 1}
    assert doc["engine"]["open"] == 3
    assert doc["engine"]["opened_total"] == 3
    assert by_name(doc)["/"] == {"name": "/", "sockets": 2, "rooms": 1}  # "lobby"; own-id rooms left out
    assert by_name(doc)["/chat"] == {"name": "/chat", "sockets": 2, "rooms": 2}
    assert doc["sockets"] == 4
    assert doc["rooms"] == 3
    assert doc["recovery"] == {"attempted": 0, "succeeded": 0, "failed": 0, "causes": NO_FAILURES, "rate": None}

    said: asyncio.Queue[str] = asyncio.Queue()
    ws.on("said", said.put_nowait)
    for i in range(5):
        await ws.emit("say", f"hello {i}")
    for _ in range(5):
        await asyncio.wait_for(said.get(), 5)

    doc = await stats_until(http, url, lambda d: d["counters"]["broadcasts"] == 5)
    assert doc["counters"]["packets_in"] == 5
    assert doc["counters"]["broadcasts"] == 5
    assert doc["counters"]["packets_out"] >= 10  # each "said" went to both sockets in "/"
    assert doc["rates"]["packets_in"] > 0
    history = doc["history"]  # one point every 5 s: the ring exists from the first sample
    assert history["window"] == 600.0 and history["step"] == 5.0
    assert len(history["age"]) == len(history["packets_in"]) == len(history["sockets"]) >= 1
    assert history["age"] == sorted(history["age"], reverse=True)
    assert [s["id"] for s in doc["servers"]] and doc["servers"][0]["health"] == "ok"

    await ws.disconnect()
    doc = await stats_until(http, url, lambda d: d["engine"]["open"] == 2)
    assert doc["engine"]["by_transport"] == {"polling": 2, "websocket": 0}
    assert by_name(doc)["/"]["sockets"] == 1 and by_name(doc)["/chat"]["sockets"] == 1
    assert doc["engine"]["opened_total"] == 3


async def test_page_renders_and_serves_its_static_files(
    served: Serve, http: aiohttp.ClientSession, clients: list[socketio.AsyncClient]
) -> None:
    io = chat_server()
    io.of("/<b>x</b>")  # namespace names end up in the page: they must be escaped
    url = await served(io)
    await connect(clients, url, "websocket")

    async with http.get(f"{url}/dashboard") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        html = await resp.text()
    assert 'data-stats-url="/dashboard/stats.json"' in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert re.search(r'<span class="value" data-stat="sockets" data-format="int">1</span>', html)
    script = re.search(r'<script src="(/dashboard/static/dashboard\.js\?v=[0-9a-f]+)" defer>', html)
    css = re.search(r'<link rel="stylesheet" href="(/dashboard/static/dashboard\.css\?v=[0-9a-f]+)">', html)
    assert script and css

    async with http.get(url + script.group(1)) as resp:
        assert resp.status == 200
        assert resp.content_type in ("application/javascript", "text/javascript")
        assert "immutable" in resp.headers["Cache-Control"]
        js = await resp.text()
    assert "fetch(statsUrl" in js and "setTimeout(poll" in js
    async with http.get(url + css.group(1)) as resp:
        assert resp.status == 200 and resp.content_type == "text/css"
    async with http.get(f"{url}/dashboard/static/../../etc/passwd") as resp:
        assert resp.status == 404
    async with http.get(f"{url}/dashboard/static/nope.js") as resp:
        assert resp.status == 404
    async with http.get(f"{url}/dashboard/", allow_redirects=False) as resp:
        assert resp.status == 301 and resp.headers["Location"] == "/dashboard"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_basic_auth_refuses_without_the_right_credentials(served: Serve, http: aiohttp.ClientSession) -> None:
    io = chat_server()
    url = await served(io, path="/ops/live/", auth=("admin", "s3cret"))
    for route in ("", "/stats.json", "/static/dashboard.js"):
        async with http.get(f"{url}/ops/live{route}") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
        async with http.get(f"{url}/ops/live{route}", headers=basic("admin", "wrong")) as resp:
            assert resp.status == 401
        async with http.get(f"{url}/ops/live{route}", headers={"Authorization": "Basic %%%"}) as resp:
            assert resp.status == 401  # garbage is a refusal, not a server error
        async with http.get(f"{url}/ops/live{route}", headers={"Authorization": "Bearer x"}) as resp:
            assert resp.status == 401
        async with http.get(f"{url}/ops/live{route}", headers=basic("admin", "s3cret")) as resp:
            assert resp.status == 200
    async with http.get(f"{url}/ops/live/stats.json", headers=basic("admin", "s3cret")) as resp:
        assert (await resp.json())["server_count"] == 1


async def test_callable_auth_sync_async_and_failing(served: Serve, http: aiohttp.ClientSession) -> None:
    async def allow_with_token(request: web.Request) -> bool:
        return request.headers.get("X-Token") == "t0k"

    def broken(request: web.Request) -> bool:
        raise RuntimeError("bug in the check")

    url = await served(chat_server(), auth=allow_with_token)
    async with http.get(f"{url}/dashboard/stats.json") as resp:
        assert resp.status == 403
    async with http.get(f"{url}/dashboard/stats.json", headers={"X-Token": "t0k"}) as resp:
        assert resp.status == 200
    url = await served(chat_server(), auth=broken)
    async with http.get(f"{url}/dashboard") as resp:
        assert resp.status == 403  # fails closed
    url = await served(chat_server(), auth=lambda request: request.query.get("k") == "1")
    async with http.get(f"{url}/dashboard?k=1") as resp:
        assert resp.status == 200


async def test_aiohttp_app_flag(served: Serve, http: aiohttp.ClientSession) -> None:
    io = chat_server()
    url = await served(io, app=io.aiohttp_app(dashboard=True))
    doc = await stats(http, url)
    assert doc["server_count"] == 1 and doc["sockets"] == 0


def test_setup_rejects_bad_arguments() -> None:
    io = siopg.Server()
    app = web.Application()
    for path in ("dashboard", "/", "/a/{b}"):
        with pytest.raises(ValueError):
            dashboard.setup(io, app, path=path)
    for auth in (("admin",), ("admin", 1), ("", "pw"), ("a:b", "pw"), "admin:pw"):
        with pytest.raises(TypeError):
            dashboard.setup(io, app, auth=auth)  # type: ignore[arg-type]


def reading(t: float, packets_in: int, sockets: int = 0) -> Reading:
    counters = dict.fromkeys(
        ("packets_out", "broadcasts", "recoveries_attempted", "recoveries_succeeded", "sessions_persisted",
         "engine_connections_total"), 0)
    counters["packets_in"] = packets_in
    return Reading(t, counters, {"websocket": sockets})


def test_sampler_rates_and_history_ring() -> None:
    now = [100.0]
    packets = [10]
    sampler = Sampler(lambda t: reading(t, packets[0]), Identity("a"), clock=lambda: now[0], step=5.0, window=20.0)
    assert sampler.sample()["rates"]["packets_in"] == 0.0  # nothing to compare with yet
    now[0], packets[0] = 102.0, 30
    doc = sampler.sample()
    assert doc["rates"]["packets_in"] == 10.0
    assert doc["history"]["t"] == [100.0]  # a point every 5 s, not every sample
    now[0] = 102.0
    assert sampler.sample()["rates"]["packets_in"] == 10.0  # no time passed: the last rates stay
    for t in (105.0, 110.0, 115.0, 120.0, 125.0):
        now[0] = t
        doc = sampler.sample()
    assert doc["history"]["t"] == [105.0, 110.0, 115.0, 120.0, 125.0]  # 100.0 fell out of the window
    assert doc["history"]["counters"]["packets_in"] == [30] * 5
    assert recovery({})["rate"] is None
    assert recovery({"recoveries_attempted": 4, "recoveries_succeeded": 3})["rate"] == 0.75


async def test_recovery_and_persisted_counts_come_from_the_metrics(served: Serve, http: aiohttp.ClientSession) -> None:
    io = chat_server()
    url = await served(io)
    io.metrics.recoveries_attempted, io.metrics.recoveries_succeeded, io.metrics.sessions_persisted = 4, 3, 7
    doc = await stats(http, url)
    assert doc["recovery"] == {"attempted": 4, "succeeded": 3, "failed": 1, "causes": NO_FAILURES, "rate": 0.75}
    assert doc["sessions_persisted"] == 7 == doc["counters"]["sessions_persisted"]
    async with http.get(f"{url}/dashboard") as resp:
        html = await resp.text()
    assert re.search(r'data-stat="recovery.rate" data-format="percent">75%<', html)


async def test_server_count_is_cluster_wide_with_the_postgres_adapter(
    served: Serve, http: aiohttp.ClientSession, pg_dsn: str
) -> None:
    import asyncpg

    from siopg.adapter.postgres.migrations import migrate, quote_ident

    schema = "siopg_dash_" + secrets.token_hex(4)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate(conn, schema)
        options = {"schema": schema, "heartbeat_interval": 0.3, "heartbeat_timeout": 1.5}
        io_a = siopg.Server(adapter=siopg.PostgresAdapter(pg_dsn, **options))
        io_b = siopg.Server(adapter=siopg.PostgresAdapter(pg_dsn, **options))
        url = await served(io_a)
        runner_b = web.AppRunner(io_b.aiohttp_app())
        await runner_b.setup()  # startup hooks run here: B's adapter joins the cluster
        try:
            doc = await stats_until(http, url, lambda d: d["server_count"] == 2)
            assert doc["server_count"] == 2
        finally:
            await runner_b.cleanup()
        doc = await stats_until(http, url, lambda d: d["server_count"] == 1, timeout=8.0)
        assert doc["server_count"] == 1
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await conn.close()


async def test_grafana_dashboard_only_uses_metrics_siopg_exports(pg_dsn: str) -> None:
    import inspect
    import json
    from pathlib import Path

    import asyncpg
    from prometheus_client import generate_latest

    import siopg.supervisor.metrics as supervisor_metrics
    from siopg.adapter.postgres.migrations import migrate, quote_ident

    path = Path(__file__).resolve().parents[2] / "dashboard" / "grafana-siopg.json"
    doc = json.loads(path.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\bsiopg_[a-z_]+", expr)}
    # what a server with the Postgres adapter exports (a superset of the in-memory one's)
    schema = "siopg_graf_" + secrets.token_hex(4)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate(conn, schema)
        io = siopg.Server(adapter=siopg.PostgresAdapter(pg_dsn, schema=schema))
        io.of("/chat")
        await io._startup()
        try:
            exported = set(re.findall(r"^(siopg_[a-z_]+)", generate_latest(io.metrics_registry).decode(), re.M))
        finally:
            await io.close()
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await conn.close()
    exported |= set(re.findall(r"# TYPE (siopg_supervisor_[a-z_]+)", inspect.getsource(supervisor_metrics)))
    assert used and used <= exported, used - exported
    assert {"siopg_connected_sockets", "siopg_packets_received_total", "siopg_recoveries_succeeded_total"} <= used
    assert {"siopg_engine_connections_by_transport", "siopg_rooms"} <= used
    assert {"siopg_recovery_failed_total", "siopg_disconnections_total", "siopg_bytes_sent_total",
            "siopg_event_loop_lag_seconds_bucket", "siopg_commit_to_delivery_seconds_bucket",
            "siopg_pg_listen_reconnects_total", "siopg_acks_timed_out_total"} <= used
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in doc["panels"] if "datasource" in p)
