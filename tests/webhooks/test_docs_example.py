"""The signature check printed in docs/webhooks.md, run as it is written against what the sender really sends."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crm_core.webhooks.signing import signature_header

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def docs_verify() -> Callable[..., bool]:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1, "docs/webhooks.md should hold exactly one Python example"
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(DOCS), "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify_signature"]
    return verify


def test_the_documented_check_accepts_a_real_signature_and_refuses_tampering() -> None:
    verify = docs_verify()
    secret, body = "whsec_test", b'{"id":"evt_1","type":"ticket.created","data":{"number":1001}}'
    header = signature_header(secret, body)
    assert verify(secret, body, header)
    assert not verify(secret, body.replace(b"1001", b"1002"), header)
    assert not verify("whsec_other", body, header)
    assert not verify(secret, body, "t=abc,v1=00")
    assert not verify(secret, body, "nonsense")
    old = signature_header(secret, body, timestamp=int(time.time()) - 3600)
    assert not verify(secret, body, old)  # a replay an hour later
    assert verify(secret, body, old, tolerance_s=7200)
