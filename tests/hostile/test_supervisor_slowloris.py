"""Finding 4: slow clients reading heads at the supervisor cannot exhaust it.

Real processes and real sockets: the supervisor runs with a small open-files limit (256); a
slowloris opens 300 connections that each send part of a request head and then nothing.
Before the fix every one held a descriptor until its head timeout, accept() hit EMFILE and
every other client waited for the timeouts; now past --max-pending-heads (capped at half
the limit) the oldest pending head is cut and other clients are served at once. Each head
is still bounded in time (--head-timeout) and size (431 past the limit).
"""

from __future__ import annotations

import socket
import time

from hostile.supervisor_helpers import (  # noqa: F401
    STANDIN_APP,
    http_raw,
    private_database,
    supervisors,
)

HANDSHAKE = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_slowloris_cannot_exhaust_the_supervisor(supervisors, private_database):  # noqa: F811 - fixtures
    sv = supervisors(STANDIN_APP, 2, "--database-url", private_database, "--head-timeout", "20",
                     "--metrics", nofile=256)
    sv.wait_serving(60)
    assert http_raw(sv.port, HANDSHAKE).startswith(b"HTTP/1.1 200 ")
    slow: list[socket.socket] = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", sv.port), timeout=5)
            s.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nX-Slow: ")
            slow.append(s)
        time.sleep(0.2)  # let the supervisor accept them all (nothing to wait for: none completes)
        for _ in range(5):  # everyone else is served at once, not after the slow heads time out
            t0 = time.monotonic()
            answer = http_raw(sv.port, HANDSHAKE, timeout=3)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            assert time.monotonic() - t0 < 2
        # the oldest slow heads were cut; the supervisor says how many
        slow[0].settimeout(5)
        try:
            assert slow[0].recv(1024) in (b"",)
        except ConnectionResetError:
            pass
        metrics = http_raw(sv.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10).decode()
        evicted = [line for line in metrics.splitlines() if line.startswith("siopg_supervisor_heads_evicted_total ")]
        assert evicted and float(evicted[0].split()[1]) > 0, evicted
    finally:
        for s in slow:
            s.close()
    assert "accept failed" not in sv.log()
    assert sv.proc.poll() is None
