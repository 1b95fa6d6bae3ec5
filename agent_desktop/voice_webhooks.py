"""Twilio Voice webhooks: the IVR flows as TwiML, for requests that carry a valid X-Twilio-Signature only."""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint, Response, abort, request
from twilio.request_validator import RequestValidator

from ivr.engine import CrmContext
from ivr.flow import Flow
from ivr.twiml import TwimlFlow

log = logging.getLogger(__name__)


def voice_blueprint(
    flows: dict[str, Flow], crm: CrmContext, *, auth_token: str | None, public_base_url: str
) -> Blueprint:
    blueprint = Blueprint("voice", __name__)
    validator = RequestValidator(auth_token) if auth_token else None
    base = public_base_url.rstrip("/")

    @blueprint.post("/voice/<flow_name>")
    async def voice(flow_name: str) -> Any:
        if validator is None:
            abort(503, "Twilio is not configured (CRM_TWILIO_AUTH_TOKEN).")
        form = {k: v for k, v in (await request.form).items()}
        # Twilio signs the URL it called: ours as the public sees it, with the query string
        url = f"{base}{request.path}" + (f"?{request.query_string.decode()}" if request.query_string else "")
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not validator.validate(url, form, signature):
            log.warning("refused a voice webhook with a bad signature from %s", request.remote_addr)
            abort(403, "The request is not signed by Twilio.")
        flow = flows.get(flow_name)
        if flow is None:
            abort(404, "No such IVR flow.")
        twiml = TwimlFlow(flow, crm, f"{base}/voice/{flow_name}")
        body = await twiml.respond({k: v for k, v in request.args.items()}, form)
        return Response(body, mimetype="application/xml")

    return blueprint
