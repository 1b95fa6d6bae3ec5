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
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crm_core.tokens.service import SCOPES
from tests.api.conftest import issue
from tests.desktop.live import LiveCenter

EXAMPLES_PER_OPERATION = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def run_contract(base_url: str, secret: str) -> tuple[int, Counter[str]]:
    """Blocking (schemathesis speaks `requests`): run in a thread while the server's loop serves."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json")
    examples: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    for operation in operations:
        examples.update(run_operation(operation, base_url, secret))
    return len(operations), examples


def run_operation(operation: Any, base_url: str, secret: str) -> Counter[str]:
    label = f"{operation.method.upper()} {operation.path}"
    examples: Counter[str] = Counter()

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy())
    def answers_as_documented(case: Any) -> None:
        examples[label] += 1
        case.call_and_validate(
            base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, checks=CHECKS, timeout=10
        )

    answers_as_documented()
    return examples


async def test_every_operation_answers_as_documented(center: LiveCenter) -> None:
    _token_id, secret = await issue(center, "contract", SCOPES, rate_per_minute=60_000)
    operations, examples = await asyncio.to_thread(run_contract, center.base_url, secret)
    print(f"\ncontract: {sum(examples.values())} examples over {len(examples)} operations")
    for label, count in sorted(examples.items()):
        print(f"  {count:4d}  {label}")
    assert operations >= 16 and len(examples) == operations  # every operation of the document was run
    assert all(count >= 5 for count in examples.values()), examples
