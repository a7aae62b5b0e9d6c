"""Fixtures of the fault suite: one private PostgreSQL per module (never the shared one: the
scenarios restart it and cut it off), stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import PrivatePostgres


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        yield pg
    finally:
        pg.stop()
