"""`compress(False)` per emit: uncompressed frames on a per-message-deflate connection."""

from __future__ import annotations

import asyncio
import os
import struct
import zlib

import pytest
from aiohttp import web

import siopg

from .helpers import start_app



async def serve(io: siopg.Server) -> tuple[web.AppRunner, int]:
    return await start_app(io.aiohttp_app())


class RawWs:
    """A minimal WebSocket client that shows each frame's RSV1 (compressed) bit."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.inflate = zlib.decompressobj(-15)

    @classmethod
    async def open(cls, port: int) -> tuple["RawWs", str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            ("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode()
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
        return cls(reader, writer), head

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        self.writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    async def frame(self) -> tuple[bool, str]:
        """(compressed?, text) of the next frame."""
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await self.reader.readexactly(n)
        compressed = bool(b0 & 0x40)
        if compressed:
            payload = self.inflate.decompress(payload + b"\x00\x00\xff\xff")
        return compressed, payload.decode()


@pytest.mark.parametrize("deflate", [True, False])
async def test_compress_false_sends_plain_frames_between_compressed_ones(deflate: bool) -> None:
    io = siopg.Server(per_message_deflate=deflate)
    big = "x" * 2000

    @io.on("connection")
    async def on_connection(socket: siopg.Socket) -> None:
        @socket.on("go")
        async def go() -> None:
            await socket.emit("a", big)
            await socket.compress(False).emit("b", big)
            await io.compress(False).emit("c", big)
            await io.emit("d", big)
            await socket.compress(True).emit("e", big)
            await socket.broadcast.compress(False).emit("f", big)  # nobody else: nothing sent

    runner, port = await serve(io)
    try:
        ws, head = await RawWs.open(port)
        assert ("permessage-deflate" in head) is deflate
        assert (await ws.frame())[1].startswith("0{")
        ws.send("40")
        assert (await ws.frame())[1].startswith("40{")
        ws.send('42["go"]')
        frames = [await ws.frame() for _ in range(5)]
        assert [text for _, text in frames] == [f'42["{e}","{big}"]' for e in "abcde"]
        expected = [True, False, False, True, True] if deflate else [False] * 5
        assert [compressed for compressed, _ in frames] == expected
        ws.writer.close()
    finally:
        await io.close()
        await runner.cleanup()
