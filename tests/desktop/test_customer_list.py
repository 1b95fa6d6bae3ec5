"""The customer list and top-bar search over HTTP: found by any written form, escaped, paged, bad input refused."""

from __future__ import annotations

import aiohttp

from tests.desktop.live import XSS_NAME, LiveCenter
from tests.desktop.test_authorization import signed_in


async def test_search_page_and_api(center: LiveCenter) -> None:
    http, _token = await signed_in(center, "agent")
    try:
        async with http.get(f"{center.base_url}/customers", params={"q": "(555) 123-0001"}) as page:
            html = await page.text()
            assert page.status == 200
        assert "Alice Example" in html and "Bob Example" not in html
        assert f"/customers/{center.customers['Alice Example']}" in html
        async with http.get(f"{center.base_url}/customers") as page:
            html = await page.text()
        assert "Bob Example" in html and XSS_NAME not in html and "&lt;img src=x" in html  # escaped
        async with http.get(f"{center.base_url}/api/customers", params={"q": "exampel"}) as answer:
            body = await answer.json()
        assert body["matched_by"] == "similar"
        assert {c["name"] for c in body["customers"]} >= {"Alice Example", "Bob Example"}
        for params, field, status in (
            ({"q": "a\x00b"}, "q", 400),
            ({"page": "x"}, "page", 422),
            ({"page": "0"}, "page", 422),
        ):
            async with http.get(f"{center.base_url}/api/customers", params=params) as answer:
                assert answer.status == status  # a control character is refused before any handler
                assert (await answer.json())["details"]["field"] == field
    finally:
        await http.close()


async def test_top_bar_search_on_every_staff_page(center: LiveCenter) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        cookie = await center.cookie("agent1001")
        async with http.get(f"{center.base_url}/desktop", headers={"Cookie": cookie}) as page:
            html = await page.text()
        assert 'role="search"' in html and 'name="q"' in html


async def test_a_browser_gets_the_error_page_and_a_script_gets_json(center: LiveCenter) -> None:
    agent, _ = await signed_in(center, "agent")
    boss, _ = await signed_in(center, "supervisor")
    page = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    try:
        async with agent.get(f"{center.base_url}/customers/no-such-customer", headers=page) as answer:
            html = await answer.text()
            assert answer.status == 404 and answer.content_type == "text/html"
        assert "<h1>Not found</h1>" in html and "Back</a>" in html
        async with boss.get(f"{center.base_url}/reports", params={"start": "bad"}, headers=page) as answer:
            html = await answer.text()
            assert answer.status == 422 and answer.content_type == "text/html"
        assert "start is not a date" in html
        async with agent.get(f"{center.base_url}/customers/no-such-customer", headers={"HX-Request": "true"}) as answer:
            assert answer.status == 404 and (await answer.json())["code"] == "not_found"
        async with agent.get(f"{center.base_url}/api/customers", params={"page": "0"}, headers=page) as answer:
            assert answer.status == 422 and (await answer.json())["details"]["field"] == "page"
    finally:
        await agent.close()
        await boss.close()
