"""Who calls the REST API: a bearer token (never a session cookie), found by its hash, rate-limited per token, and
each use audited under its name. `require_token(scope)` guards a view; any blueprint may use it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from quart import Response, current_app, g, request

from agent_desktop.api.ratelimit import RateLimiter, retry_after_header
from agent_desktop.routes.common import runtime
from crm_core.errors import CrmError
from crm_core.tokens.errors import InvalidToken
from crm_core.tokens.service import TokenPrincipal, authenticate_token, record_token_use

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
SECURITY_SCHEME = "bearerToken"
_SECURITY_ATTRIBUTE = "_quart_schema_security_tag"  # what quart-schema reads to document a view's security


class RateLimited(CrmError):
    code = "rate_limited"
    http_status = 429


def current_principal() -> TokenPrincipal:
    found = g.get("api_principal")
    if not isinstance(found, TokenPrincipal):  # require_token ran authenticate() first
        raise InvalidToken("Send a valid API token: Authorization: Bearer crm_….")
    return found


def _presented_secret() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


async def authenticate() -> TokenPrincipal:
    """The calling token, checked against the database on every request (a revocation holds at once, in every
    worker), then charged one request from its bucket."""
    found = g.get("api_principal")
    if isinstance(found, TokenPrincipal):
        return found
    async with runtime().sessions() as db:
        principal = await authenticate_token(session=db, secret=_presented_secret())
    g.api_principal = principal
    limiter: RateLimiter = current_app.extensions["api_rate_limiter"]
    verdict = await limiter.take(principal.token_id, principal.rate_per_minute)
    if not verdict.allowed:
        raise RateLimited(
            f"This token may make {principal.rate_per_minute} requests a minute; wait and try again.",
            retry_after=retry_after_header(verdict),
        )
    return principal


def require_token(*scopes: str) -> Callable[[F], F]:
    """Only a valid, unrevoked, not rate-limited token with every one of `scopes` reaches the view."""

    def decorate(view: F) -> F:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = await authenticate()
            for scope in scopes:
                principal.require(scope)
            return await view(*args, **kwargs)

        setattr(wrapper, _SECURITY_ATTRIBUTE, [{SECURITY_SCHEME: list(scopes)}])
        return wrapper  # type: ignore[return-value]

    return decorate


async def audit_token_use(response: Response) -> Response:
    """After every request a token made (refused and failed ones too): one audit row under the token's name."""
    principal = g.get("api_principal")
    if isinstance(principal, TokenPrincipal):
        async with runtime().unit_of_work() as db:
            await record_token_use(
                session=db, principal=principal, method=request.method, path=request.path, status=response.status_code
            )
    return response
