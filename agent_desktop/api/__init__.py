"""The integration API: /api/v1 (token-authenticated REST, documented at /api/openapi.json and /api/docs) and the
admin screen that issues and revokes its tokens. `install_api(app, runtime)` wires it into the app."""

from __future__ import annotations

from quart import Quart
from quart_schema import QuartSchema

from agent_desktop.api import admin_tokens, webhooks
from agent_desktop.api.auth import SECURITY_SCHEME
from agent_desktop.api.docs import ApiDocument, docs_blueprint
from agent_desktop.api.ratelimit import InProcessBuckets, RateLimiter, RedisBuckets
from agent_desktop.api.routes import blueprint
from agent_desktop.runtime import Runtime
from crm_core.tokens.service import SCOPES


def install_api(app: Quart, runtime: Runtime) -> None:
    QuartSchema(
        app,
        openapi_path="/api/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info={
            "title": "Contact-center CRM API",
            "version": "1.0.0",
            "description": "Send an API token from Admin → API tokens as `Authorization: Bearer crm_…`. Scopes: "
            + "; ".join(f"`{name}` ({what})" for name, what in SCOPES.items())
            + ". Every error is {code, message, details}.",
        },
        security_schemes={
            SECURITY_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "bearer_format": "crm_ token",
            }
        },
        openapi_provider_class=ApiDocument,
    )
    settings = runtime.settings
    limiter: RateLimiter = RedisBuckets(settings.redis_url) if settings.redis_url else InProcessBuckets()
    app.extensions["api_rate_limiter"] = limiter

    app.register_blueprint(blueprint)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(docs_blueprint)
    app.register_blueprint(admin_tokens.blueprint)

    @app.after_serving
    async def _close_limiter() -> None:
        await limiter.close()
