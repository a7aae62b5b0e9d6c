"""Fixtures for the server-layer unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import siopg


@pytest.fixture
async def io() -> AsyncIterator[siopg.Server]:
    """A default in-memory Server, closed after the test (a module may override it)."""
    server = siopg.Server()
    yield server
    await server.close()
