"""The control channel carries metrics of any size; namespace labels stay bounded (real sockets)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from siopg.metrics import MAX_LABEL_BYTES, OTHER_LABEL, fold_namespaces
from siopg.supervisor import channel
from siopg.supervisor.metrics import MetricsEndpoint


async def test_an_exposition_of_several_megabytes_crosses_the_channel_in_order() -> None:
    loop = asyncio.get_running_loop()
    parent, child = channel.channel_pair()
    child.setblocking(False)
    gone: list[bool] = []
    outbox = channel.Outbox(loop, child, lambda: gone.append(True))
    pool = SimpleNamespace(current_workers=list)
    endpoint = MetricsEndpoint(pool, lambda: None)  # type: ignore[arg-type]
    done: asyncio.Future[None] = loop.create_future()
    got: dict[str, bytes] = {}
    endpoint._waiting[b"7"] = (done, got, {"0"})
    received: list[bytes] = []

    def on_message(msg: bytes) -> None:
        received.append(msg)
        endpoint.on_reply("0", msg)

    end = channel.SupervisorEnd(loop, parent, on_message, lambda: None)
    text = b"".join(b"siopg_x{namespace=\"/n%07d\"} 1\n" % i for i in range(200_000))  # ~6 MB
    assert len(text) > 4 << 20
    assert outbox.send(channel.chunks(channel.METRICS_MORE, channel.METRICS_REPLY, b"7\n", text))
    await asyncio.wait_for(done, 10)
    assert got["0"] == text
    assert max(len(m) for m in received) <= channel.CHUNK + 16
    assert not gone and outbox.dropped == 0
    end.close()
    outbox.close()
    child.close()


async def test_a_message_the_kernel_refuses_does_not_end_the_worker() -> None:
    loop = asyncio.get_running_loop()
    parent, child = channel.channel_pair()
    child.setblocking(False)
    gone: list[bool] = []
    outbox = channel.Outbox(loop, child, lambda: gone.append(True))
    outbox.send([b"L" + b"x" * (8 << 20)])  # one datagram far over the socket buffer: EMSGSIZE
    assert outbox.dropped == 1 and not gone and not outbox.closed
    assert outbox.send([channel.LOAD + b"3"])
    assert parent.recv(100) == channel.LOAD + b"3"
    parent.close()
    outbox.send([channel.LOAD + b"4"])  # the supervisor is gone: that ends the worker
    assert gone == [True]
    child.close()


def test_namespace_labels_are_folded_past_the_limit_and_for_long_names() -> None:
    parent = SimpleNamespace(name="/_1")
    namespaces = {"/": SimpleNamespace(_parent=None), "/admin": SimpleNamespace(_parent=None)}
    for i in range(10):
        namespaces[f"/dyn-{i}"] = SimpleNamespace(_parent=parent)
    namespaces["/dyn-" + "x" * 700_000] = SimpleNamespace(_parent=parent)
    namespaces["/dyn-\ud800"] = SimpleNamespace(_parent=parent)  # not valid UTF-8
    namespaces["/late-static"] = SimpleNamespace(_parent=None)
    folded = fold_namespaces(namespaces, 5)
    assert list(folded)[:5] == ["/", "/admin", "/dyn-0", "/dyn-1", "/dyn-2"]
    assert len(folded["/_1/*"]) == 7 + 2
    assert folded[OTHER_LABEL] == [namespaces["/late-static"]]
    assert len(folded) == 7
    assert sum(len(v) for v in folded.values()) == len(namespaces)
    assert all(len(label.encode()) <= MAX_LABEL_BYTES + 2 for label in folded)


def test_a_socket_pair_datagram_over_the_buffer_really_fails() -> None:
    """The premise of the chunking: one SEQPACKET datagram cannot exceed the socket buffer."""
    a, b = channel.channel_pair()
    try:
        try:
            b.send(b"x" * (8 << 20))
        except OSError as exc:
            assert exc.errno is not None
        else:  # pragma: no cover - a kernel with huge buffers
            raise AssertionError("an 8 MiB datagram was accepted")
    finally:
        a.close()
        b.close()
