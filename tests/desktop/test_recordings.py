"""Call recordings on the customer page: who may listen, every listen audited, nothing outside the store served."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import aiohttp
from sqlalchemy import select

from crm_core.audit.models import AuditEntry
from crm_core.calls.models import CallLog
from tests.desktop.live import LiveCenter
from tests.desktop.test_authorization import signed_in


def tone_wav() -> bytes:
    """One second of 8 kHz mono audio, as Asterisk's MixMonitor writes .wav."""
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(bytes(range(256)) * 62 + bytes(128))
    return out.getvalue()


async def add_call(center: LiveCenter, linkedid: str, agent: str, recording_ref: str | None) -> None:
    async with center.runtime.unit_of_work() as db:
        db.add(
            CallLog(
                linkedid=linkedid,
                direction="inbound",
                caller_number="+15551230002",
                customer_id=center.customers["Bob Example"],
                queue="support",
                agent=agent,
                outcome="answered",
                recording_ref=recording_ref,
            )
        )


async def listens(center: LiveCenter) -> list[AuditEntry]:
    async with center.runtime.sessions() as db:
        return list(await db.scalars(select(AuditEntry).where(AuditEntry.entity_type == "recording")))


async def test_the_agent_who_had_the_call_and_supervisors_listen_and_each_listen_is_audited(
    center: LiveCenter, tmp_path: Path
) -> None:
    audio = tone_wav()
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "1795462442.1.wav").write_bytes(audio)
    await add_call(center, "1795462442.7", "1001", "/var/spool/asterisk/monitor/1795462442.1.wav")
    url = f"{center.base_url}/api/calls/1795462442.7/recording"

    http, _ = await signed_in(center, "agent")  # agent1001, who took the call
    try:
        async with http.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "audio/wav"
            assert response.headers["Cache-Control"] == "private, no-store"
            assert await response.read() == audio
        async with http.get(url, headers={"Range": "bytes=100-"}) as response:  # the player seeking
            assert response.status == 206
            assert await response.read() == audio[100:]
        # the customer page offers the player
        async with http.get(f"{center.base_url}/customers/{center.customers['Bob Example']}") as page:
            assert '<audio class="recording" controls preload="none" src="/api/calls/1795462442.7/recording"' in (
                await page.text()
            )
    finally:
        await http.close()
    entries = await listens(center)
    assert len(entries) == 1  # one listen, however many byte ranges it took
    assert entries[0].action == "read" and entries[0].after == {
        "linkedid": "1795462442.7",
        "recording": "/var/spool/asterisk/monitor/1795462442.1.wav",
    }

    boss, _ = await signed_in(center, "supervisor")
    try:
        async with boss.get(url) as response:
            assert response.status == 200
    finally:
        await boss.close()
    assert len(await listens(center)) == 2

    await add_call(center, "1795462442.9", "1002", "/var/spool/asterisk/monitor/1795462442.1.wav")
    http, _ = await signed_in(center, "agent")
    try:
        async with http.get(f"{center.base_url}/api/calls/1795462442.9/recording") as response:
            assert response.status == 403  # agent 1001 never had this call
            assert (await response.json())["code"] == "permission_denied"
    finally:
        await http.close()
    assert len(await listens(center)) == 2  # a refused listen is no listen


async def test_no_recording_no_store_file_and_no_way_out_of_the_store(center: LiveCenter, tmp_path: Path) -> None:
    (tmp_path / "recordings").mkdir()
    await add_call(center, "1795462442.20", "1001", None)
    await add_call(center, "1795462442.21", "1001", "/var/spool/asterisk/monitor/not-yet-synced.wav")
    await add_call(center, "1795462442.22", "1001", "/var/spool/asterisk/monitor/../../../crm.db")
    await add_call(center, "1795462442.23", "1001", "../secret_key")
    http, _ = await signed_in(center, "agent")
    try:
        for linkedid in ("1795462442.20", "1795462442.21", "1795462442.22", "1795462442.23", "nosuchcall"):
            async with http.get(f"{center.base_url}/api/calls/{linkedid}/recording") as response:
                body = await response.read()
                assert response.status == 404, linkedid
                assert b"SQLite" not in body and b"Traceback" not in body
                assert response.headers["Content-Type"].startswith("application/json")
    finally:
        await http.close()
    assert await listens(center) == []  # nothing heard, nothing audited


async def test_signed_out_nobody_listens(center: LiveCenter) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{center.base_url}/api/calls/1795462442.7/recording", allow_redirects=False) as r:
            assert r.status in (401, 302)
