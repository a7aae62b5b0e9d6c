"""Who may see the dashboard: nobody's business but the operator's.

`auth` is either a callable(request) -> bool (may be async) or a (user, password) tuple
checked as HTTP basic auth. `check()` answers None to let the request through, or the
aiohttp response refusing it.
"""

from __future__ import annotations

import base64
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

logger = logging.getLogger("siopg.dashboard")

AuthCallable = Callable[[web.Request], bool | Awaitable[bool]]
Auth = AuthCallable | tuple[str, str] | None

REALM = "siopg dashboard"


def validate(auth: Any) -> Auth:
    """Reject a misconfigured `auth` at setup time rather than on the first request."""
    if auth is None or callable(auth):
        return auth
    if (
        isinstance(auth, tuple)
        and len(auth) == 2
        and all(isinstance(part, str) for part in auth)
        and auth[0]
        and ":" not in auth[0]
    ):
        return auth
    raise TypeError("auth must be None, a callable(request) -> bool, or a (user, password) tuple of str")


def parse_credentials(value: str) -> tuple[str, str]:
    """`USER:PASSWORD` (the form of `siopg serve --dashboard-auth`) -> (user, password).

    Splits at the first colon, like HTTP basic auth; raises ValueError when either part is empty.
    """
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("dashboard credentials must look like USER:PASSWORD (both non-empty)")
    return user, password


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header; None when it is not one."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text in the header
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _basic_ok(request: web.Request, user: str, password: str) -> bool:
    return basic_matches(request.headers.get(hdrs.AUTHORIZATION, ""), user, password)


def basic_matches(header: str, user: str, password: str) -> bool:
    """True when the `Authorization` header value carries exactly these basic-auth credentials."""
    given = _basic_credentials(header)
    if given is None:
        return False
    # compare both parts, always, in constant time
    user_ok = hmac.compare_digest(given[0].encode(), user.encode())
    password_ok = hmac.compare_digest(given[1].encode(), password.encode())
    return user_ok and password_ok


def _refuse_basic() -> web.Response:
    return web.Response(
        status=401,
        text="authentication required\n",
        headers={hdrs.WWW_AUTHENTICATE: f'Basic realm="{REALM}", charset="UTF-8"', hdrs.CACHE_CONTROL: "no-store"},
    )


async def check(auth: Auth, request: web.Request) -> web.Response | None:
    """None when `request` may proceed; otherwise the refusal to send."""
    if auth is None:
        return None
    if isinstance(auth, tuple):
        return None if _basic_ok(request, *auth) else _refuse_basic()
    try:
        allowed = auth(request)
        if inspect.isawaitable(allowed):
            allowed = await allowed
    except web.HTTPException:
        raise  # the callable chose its own answer (a redirect to a login page, say)
    except Exception:  # fail closed: a broken check must not open the dashboard
        logger.exception("dashboard auth callable failed; refusing the request")
        allowed = False
    if allowed is True:
        return None
    return web.Response(status=403, text="forbidden\n", headers={hdrs.CACHE_CONTROL: "no-store"})
