"""The admin's API token screen and the API reference page in real headless Chromium: a token is made with its
scopes, its secret shown once and used by an integration over HTTP, then revoked; the reference page shows every
operation of the OpenAPI document."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_desktop_browser import SHOTS, browser, center, sign_in  # noqa: F401  (fixtures)
from tests.desktop.live import LiveCenter

pytestmark = pytest.mark.browser


async def api_status(live: LiveCenter, secret: str, path: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{live.base_url}/api/v1{path}", headers={"Authorization": f"Bearer {secret}"}) as response,
    ):
        return response.status


async def test_make_use_and_revoke_a_token(browser: Browser, center: LiveCenter) -> None:  # noqa: F811
    page = await sign_in(browser, center, "root", "/admin/tokens")
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    await expect(page.locator("#tokens")).to_contain_text("No tokens yet.")

    await page.fill('input[name="name"]', "Shop sync")
    await page.click('form.token-form button[type="submit"]')  # no scope ticked: refused, nothing made
    await expect(page.locator("#tokens p.error")).to_have_text("Give the token at least one scope.")
    assert len(problems) == 2 and "422" in problems[0]  # the refusal, as the browser logs it
    problems.clear()
    await page.check('input[name="scopes"][value="customers:read"]')
    await page.check('input[name="scopes"][value="calls:read"]')
    await page.click('form.token-form button[type="submit"]')
    shown = page.locator(".token-secret code.secret")
    await expect(shown).to_have_text(re.compile(r"^crm_[A-Za-z0-9_-]{40,}$"))
    secret = await shown.inner_text()
    row = page.locator('tr[data-token="Shop sync"]')
    await expect(row).to_contain_text("calls:read, customers:read")
    await expect(row).to_contain_text(secret[:12] + "…")
    await expect(row).to_contain_text("never")
    await expect(page.locator("#tokens p.error")).to_be_empty()  # the earlier refusal is gone
    if SHOTS:
        await page.screenshot(path=f"{SHOTS}/api-tokens.png")

    bob = center.customers["Bob Example"]
    assert await api_status(center, secret, f"/customers/{bob}") == 200
    assert await api_status(center, secret, "/users") == 403  # not in its scopes
    await page.reload()
    await expect(page.locator(".token-secret")).to_have_count(0)  # shown once
    assert secret not in await page.content()
    await expect(row).not_to_contain_text("never")  # its last use is shown

    await row.get_by_role("button", name="Revoke").click()
    await expect(row).to_contain_text("revoked")
    assert await api_status(center, secret, f"/customers/{bob}") == 401
    assert problems == []


async def test_the_reference_page_lists_every_operation(browser: Browser, center: LiveCenter) -> None:  # noqa: F811
    page = await sign_in(browser, center, "agent1001", "/api/docs")
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    await page.reload()
    async with aiohttp.ClientSession() as http, http.get(f"{center.base_url}/api/openapi.json") as response:
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    operations = [(m.upper(), p) for p, methods in document["paths"].items() for m in methods]
    await expect(page.locator("section.operation")).to_have_count(len(operations))
    for method, path in operations:
        await expect(page.locator("section.operation h2", has_text=path).filter(has_text=method).first).to_be_visible()
    put = page.locator("section.operation", has=page.locator("code.method", has_text="PUT"))
    await expect(put).to_contain_text("scope customers:write")
    await expect(put).to_contain_text("if-match")
    await put.locator("summary", has_text="Responses").click()
    await expect(put).to_contain_text("412 If-Match does not match the current version")
    assert problems == []
