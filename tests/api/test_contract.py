"""The contract: every operation in /api/openapi.json, called over real HTTP with a real token by schemathesis
(property-based, from the document alone), answers as documented: no 5xx, a documented status, and a body that
matches the documented schema. The number of examples is printed."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from crm_core.calls.models import CallLog
from crm_core.tickets.models import Ticket
from crm_core.tokens.service import SCOPES
from crm_core.users.models import User
from crm_core.webhooks.models import WebhookDelivery, WebhookSubscription
from tests.api.conftest import issue
from tests.desktop.live import LiveCenter

EXAMPLES_PER_OPERATION = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def run_contract(base_url: str, secret: str, known: dict[str, str]) -> tuple[int, Counter[str], Counter[str]]:
    """Blocking (schemathesis speaks `requests`): run in a thread while the server's loop serves."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json")
    examples: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    for operation in operations:
        run_operation(operation, base_url, secret, known, examples, answered)
    return len(operations), examples, answered


def run_operation(
    operation: Any, base_url: str, secret: str, known: dict[str, str], examples: Counter[str], answered: Counter[str]
) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    def with_known_records(case: Any) -> Any:
        # half the examples name records that exist, so the success paths are generated too, not only 404s
        for name in list(case.path_parameters or {}):
            # a DELETE gets a record of its own, so the operations run after it still find theirs
            case.path_parameters[name] = known.get(f"{operation.method.upper()} {name}", known[name])
        return case

    generated = operation.as_strategy()
    strategy = st.one_of(generated, generated.map(with_known_records)) if "{" in operation.path else generated

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def answers_as_documented(case: Any) -> None:
        examples[label] += 1
        response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=10)
        answered[f"{response.status_code // 100}xx"] += 1
        if response.status_code < 300:
            answered[f"2xx {label}"] += 1
        case.validate_response(response, checks=CHECKS)

    answers_as_documented()


async def test_every_operation_answers_as_documented(center: LiveCenter) -> None:
    _token_id, secret = await issue(center, "contract", SCOPES, rate_per_minute=60_000)
    center.runtime.settings = center.runtime.settings.model_copy(update={"sms_sender": "+15550009999"})
    async with center.runtime.unit_of_work() as db:
        db.add(CallLog(linkedid="contract.1", direction="inbound", recording_ref="demo/contract.1.wav"))
        known = {
            "customer_id": center.customers["Bob Example"],
            "linkedid": "contract.1",
            "ticket_id": str(await db.scalar(select(Ticket.id).limit(1))),
            "user_id": str(await db.scalar(select(User.id).where(User.username == "agent1001"))),
        }
        hook = WebhookSubscription(name="contract", url="http://127.0.0.1:9/h", events=["call.ended"], secret="s")
        hook.active = False
        db.add(hook)
        await db.flush()
        letter = WebhookDelivery(subscription_id=hook.id, event_id="e" * 32, event_type="call.ended", body="{}")
        letter.status = "dead"
        db.add(letter)
        await db.flush()
        doomed = WebhookSubscription(name="doomed", url="http://127.0.0.1:9/d", events=["call.ended"], secret="s")
        doomed.active = False
        db.add(doomed)
        await db.flush()
        known |= {"subscription_id": hook.id, "DELETE subscription_id": doomed.id, "delivery_id": letter.id}
    operations, examples, answered = await asyncio.to_thread(run_contract, center.base_url, secret, known)
    print(f"\ncontract: {sum(examples.values())} examples over {len(examples)} operations; answers {dict(answered)}")
    for label, count in sorted(examples.items()):
        print(f"  {count:4d}  {label}  ({answered[f'2xx {label}']} succeeded)")
    assert operations >= 16 and len(examples) == operations  # every operation of the document was run
    assert all(count >= 5 for count in examples.values()), examples
    assert answered["5xx"] == 0
    succeeded = {label for label in examples if answered[f"2xx {label}"]}
    assert {
        "GET /api/v1/customers/{customer_id}",
        "GET /api/v1/calls/{linkedid}",
        "GET /api/v1/users/{user_id}",
        "GET /api/v1/webhooks/subscriptions",
        "GET /api/v1/webhooks/subscriptions/{subscription_id}",
        "GET /api/v1/webhooks/subscriptions/{subscription_id}/deliveries",
        "DELETE /api/v1/webhooks/subscriptions/{subscription_id}",
        "POST /api/v1/webhooks/deliveries/{delivery_id}/replay",
    } <= succeeded
