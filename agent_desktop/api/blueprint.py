"""A blueprint for token-authenticated API routes: the token checked first (then the body's shape), every use
audited under the token's name, every error in the one shape. /api/v1 is one; a later /api/v1/webhooks may be
another (or add its routes to /api/v1's) and guard each view with `require_token(scope)`."""

from __future__ import annotations

from quart import Blueprint
from quart_schema.validation import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from agent_desktop.api import errors
from agent_desktop.api.auth import audit_token_use
from crm_core.errors import CrmError


def token_blueprint(name: str, import_name: str, url_prefix: str) -> Blueprint:
    blueprint = Blueprint(name, import_name, url_prefix=url_prefix)
    blueprint.before_request(errors.check_token_then_body)
    blueprint.after_request(audit_token_use)
    blueprint.register_error_handler(CrmError, errors.crm_error)
    blueprint.register_error_handler(RequestSchemaValidationError, errors.schema_error)
    blueprint.register_error_handler(HTTPException, errors.http_error)
    return blueprint
