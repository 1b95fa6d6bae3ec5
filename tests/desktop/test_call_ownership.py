"""Call ownership on the served app: a ringing agent may decline its call but not transfer it, nobody else may touch
it; a listen is audited on its first request whatever range it asks for; a ticket needs a call that exists."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from crm_core.tickets.models import Ticket
from tests.desktop.live import LiveCenter, wait_event
from tests.desktop.test_authorization import signed_in
from tests.desktop.test_recordings import add_call, listens, tone_wav

CALL_ACTIONS = {"Hangup", "BlindTransfer", "Atxfer", "Redirect"}


async def test_a_ringing_agent_may_decline_but_not_transfer_and_no_one_else_may_touch_the_call(
    center: LiveCenter,
) -> None:
    rung = await center.socket("agent1001", "/agent")
    stranger = await center.socket("agent2001", "/agent")  # another queue: never rung
    next_free = await center.socket("agent1002", "/agent")
    try:
        linkedid = await center.pbx.place_inbound_call(
            "+15551230001", "Alice Example", "support", agent="1001", answer_after_s=400, talk_s=1
        )
        await wait_event(rung, "pop", lambda p: p["linkedid"] == linkedid)
        [live] = [call for call in center.bridge.snapshot().calls if call.linkedid == linkedid]
        assert "1001" in live.ringing_agents and live.agent is None

        sent = len(center.pbx.actions_received)
        refused = await stranger.call("hangup", {"linkedid": linkedid}, namespace="/agent")
        assert refused["ok"] is False and refused["code"] == "permission_denied"
        transfer = {"linkedid": linkedid, "target": "sales", "kind": "blind"}
        not_yet = await rung.call("transfer", transfer, namespace="/agent")
        assert not_yet["ok"] is False and not_yet["code"] == "permission_denied"  # ringing is not talking
        assert not {a.get("Action") for a in center.pbx.actions_received[sent:]} & CALL_ACTIONS

        declined = await rung.call("hangup", {"linkedid": linkedid}, namespace="/agent")
        assert declined == {"ok": True}
        assert {a.get("Action") for a in center.pbx.actions_received[sent:]} & CALL_ACTIONS == {"Hangup"}
        # declining is a reject: the caller stays queued and the next free agent is rung
        await wait_event(next_free, "pop", lambda p: p["linkedid"] == linkedid)
        [live] = [call for call in center.bridge.snapshot().calls if call.linkedid == linkedid]
        assert "1001" not in live.ringing_agents
        again = await rung.call("hangup", {"linkedid": linkedid}, namespace="/agent")
        assert again["ok"] is False and again["code"] == "permission_denied"  # no longer ringing there
    finally:
        await rung.disconnect()
        await stranger.disconnect()
        await next_free.disconnect()


async def test_a_listen_is_audited_on_its_first_request_whatever_range_it_asks_for(
    center: LiveCenter, tmp_path: Path
) -> None:
    audio = tone_wav()
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "1795462442.1.wav").write_bytes(audio)
    await add_call(center, "1795462442.7", "1001", "/var/spool/asterisk/monitor/1795462442.1.wav")
    url = f"{center.base_url}/api/calls/1795462442.7/recording"
    http, token = await signed_in(center, "agent")  # agent1001, who took the call
    try:
        async with http.get(url, headers={"Range": "bytes=1-"}) as response:  # no byte 0: still a listen
            assert response.status == 206 and await response.read() == audio[1:]
        assert len(await listens(center)) == 1
        # the same listen seeking, or reading the end first (a suffix range, which Quart's own handling turned
        # into a 500)
        for further, part in (("bytes=0-", audio), ("bytes=4000-4999", audio[4000:5000]), ("bytes=-100", audio[-100:])):
            async with http.get(url, headers={"Range": further}) as response:
                assert response.status == 206 and await response.read() == part, further
                assert response.headers["Accept-Ranges"] == "bytes"
        async with http.get(url, headers={"Range": f"bytes={len(audio)}-"}) as response:
            assert response.status == 416 and response.headers["Content-Range"] == f"bytes */{len(audio)}"
        assert len(await listens(center)) == 1

        # a ticket needs a call that exists: none is opened, silently unlinked, for a made-up linkedid
        async with http.post(
            f"{center.base_url}/api/calls/no.such.call/ticket",
            json={"subject": "Orphan"},
            headers={"X-CSRF-Token": token},
        ) as response:
            assert response.status == 404 and (await response.json())["code"] == "not_found"
        async with center.runtime.sessions() as db:
            assert await db.scalar(select(func.count()).where(Ticket.subject == "Orphan")) == 0
    finally:
        await http.close()
