"""The AMI connection: login, a dropped socket mid-call, a PBX restart, bad frames; the demo PBX's protocol."""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import ssl
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_core.calls.events import CallAnswered, CallEnded, CallOffered, CallOutcome
from cti_bridge.ami import AmiEndpoint, parse_ami_url
from cti_bridge.asterisk import AsteriskAdapter
from cti_bridge.demo_pbx import DemoPbx
from cti_bridge.normalize import MAX_FRAME_BYTES
from tests.cti.conftest import TRACES, start_harness, trace
from tests.cti.helpers import SECRET, Harness, WatchedBus


async def answered_call(harness: Harness) -> str:
    linkedid = await harness.pbx.place_inbound_call(
        "+15551230001", "Alice Example", "support", answer_after_s=0.5, talk_s=1000.0
    )
    await harness.bus.wait_for(CallAnswered, lambda e: e.linkedid == linkedid)
    return linkedid


async def reconnected(harness: Harness, connects: int) -> None:
    async def until() -> None:
        while harness.bridge.connection.connects < connects or not harness.bridge.resynced.is_set():
            await harness.bridge.connection.connected.wait()
            await harness.bridge.resynced.wait()

    await asyncio.wait_for(until(), 10)


async def test_socket_dropped_mid_call_then_the_call_ends_normally(harness: Harness) -> None:
    linkedid = await answered_call(harness)
    harness.pbx.drop_connections()
    await asyncio.wait_for(harness.bridge.connection.disconnected.wait(), 5)
    await reconnected(harness, 2)
    assert harness.bridge.resyncs == 2
    # the PBX still has the call: the resync kept it, nothing was closed
    assert not harness.bus.of(CallEnded)
    assert linkedid in {c.linkedid for c in harness.bridge.snapshot().calls}
    harness.pbx._end_call(linkedid)
    [ended] = await harness.bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    assert not ended.closed_at_resync and ended.outcome is CallOutcome.ANSWERED
    await harness.settle()
    assert len(harness.bus.of(CallEnded, linkedid=linkedid)) == 1


async def test_call_that_ended_while_the_bridge_was_blind_is_closed_at_resync(harness: Harness) -> None:
    linkedid = await answered_call(harness)
    await harness.pbx.close_listener()
    harness.pbx.drop_connections()
    await asyncio.wait_for(harness.bridge.connection.disconnected.wait(), 5)
    harness.pbx._end_call(linkedid)  # its Hangup events reach nobody
    await harness.pbx.start()  # same port: the bridge's backoff finds it again
    await reconnected(harness, 2)
    [ended] = await harness.bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
    assert ended.closed_at_resync and ended.outcome is CallOutcome.ANSWERED
    await harness.settle()
    assert len(harness.bus.of(CallEnded, linkedid=linkedid)) == 1  # not lost, not doubled


async def test_pbx_restart_announced_by_a_shutdown_event(replay_harness: Harness) -> None:
    await replay_harness.pbx.replay(trace("reconnect_after_restart"))  # FullyBooted…Shutdown(Restart: True)
    await replay_harness.pbx.close_listener()
    replay_harness.pbx.drop_connections()
    await asyncio.wait_for(replay_harness.bridge.connection.disconnected.wait(), 5)
    await replay_harness.pbx.start()
    await reconnected(replay_harness, 2)
    await replay_harness.pbx.replay(trace("reconnect_after_restart.after"))
    await replay_harness.settle()
    assert replay_harness.bridge.resyncs == 2
    assert any(getattr(e, "name", "") == "Shutdown" for e in replay_harness.pbx_events)


async def test_wrong_secret_is_reported_and_retried_without_crashing() -> None:
    pbx = DemoPbx(secret=SECRET)
    await pbx.start()
    bus = WatchedBus()
    bridge = AsteriskAdapter(
        AmiEndpoint("127.0.0.1", pbx.port, "crm", "wrong"), bus, backoff_initial=0.05, backoff_max=0.05
    )
    try:
        await bridge.start()
        await asyncio.wait_for(bridge.connection.login_refused.wait(), 5)
        assert "Authentication failed" in (bridge.connection.last_error or "")
        assert bridge.connection.connects == 0 and not bridge.snapshot().connected
        assert "wrong" not in repr(bridge.connection.endpoint)
    finally:
        await bridge.stop()
        await pbx.stop()


def test_ami_urls() -> None:
    plain = parse_ami_url("ami://crm:s%40cret@pbx.example.org")
    assert (plain.host, plain.port, plain.username, plain.secret, plain.tls) == (
        "pbx.example.org",
        5038,
        "crm",
        "s@cret",
        False,
    )
    assert parse_ami_url("amis://crm:x@10.0.0.5").port == 5039 and parse_ami_url("amis://crm:x@10.0.0.5").tls
    for bad in ("http://crm:x@pbx", "ami://pbx:5038", "ami://crm@pbx"):
        try:
            parse_ami_url(bad)
        except ValueError as exc:
            assert "AMI URL" in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


async def raw_session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    banner = await reader.readline()
    return reader, writer, banner


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, block: str) -> dict[str, str]:
    writer.write(block.replace("\n", "\r\n").encode() + b"\r\n")
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return dict(line.split(": ", 1) for line in raw.decode().strip().split("\r\n") if ": " in line)


def recorded_blocks(name: str) -> list[str]:
    text = (TRACES / f"{name}.actions.txt").read_text().replace("\r\n", "\n")
    blocks = [b for b in text.split("\n\n") if b.strip()]
    return ["\n".join(line for line in b.split("\n") if not line.startswith("#")) + "\n" for b in blocks]


def recorded_responses(name: str) -> list[dict[str, str]]:
    raw = (TRACES / f"{name}.ami").read_bytes().decode()
    frames = raw.split("\r\n\r\n")
    out = []
    for frame in frames:
        headers = dict(line.split(": ", 1) for line in frame.split("\r\n") if ": " in line)
        if "Response" in headers:
            out.append(headers)
    return out


async def test_demo_pbx_answers_bad_actions_like_asterisk() -> None:
    pbx = DemoPbx(secret=SECRET)
    await pbx.start()
    try:
        reader, writer, banner = await raw_session(pbx.port)
        assert banner == b"Asterisk Call Manager/11.0.0\r\n"
        recorded = recorded_responses("bad_action")
        for block, expected in zip(recorded_blocks("bad_action"), recorded, strict=True):
            got = await exchange(reader, writer, block.strip("\n") + "\n")
            assert (got["Response"], got.get("ActionID")) == (expected["Response"], expected.get("ActionID"))
            assert got.get("Message") == expected.get("Message"), block
            if got["Response"] == "Success" and got.get("Message") == "Authentication accepted":
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # FullyBooted
        writer.close()
        await writer.wait_closed()
    finally:
        await pbx.stop()


async def test_demo_pbx_md5_challenge_login_and_refusals() -> None:
    pbx = DemoPbx(secret=SECRET)
    await pbx.start()
    try:
        reader, writer, _ = await raw_session(pbx.port)
        before = await exchange(reader, writer, "Action: Ping\nActionID: p-1\n")
        assert before == {"Response": "Error", "ActionID": "p-1", "Message": "Permission denied"}  # bad_login.ami
        challenge = await exchange(reader, writer, "Action: Challenge\nActionID: c-1\nAuthType: MD5\n")
        key = hashlib.md5((challenge["Challenge"] + SECRET).encode(), usedforsecurity=False).hexdigest()
        login = await exchange(
            reader, writer, f"Action: Login\nActionID: c-2\nAuthType: MD5\nUsername: crm\nKey: {key}\n"
        )
        assert login["Message"] == "Authentication accepted"
        writer.close()
        await writer.wait_closed()
        reader, writer, _ = await raw_session(pbx.port)
        refused = await exchange(reader, writer, "Action: Login\nActionID: l-1\nUsername: crm\nSecret: nope\n")
        assert refused == {"Response": "Error", "ActionID": "l-1", "Message": "Authentication failed"}
        assert await reader.read() == b""  # and the PBX hangs up, as Asterisk does
        writer.close()
        await writer.wait_closed()
    finally:
        await pbx.stop()


VALID_JOIN = (
    "Event: QueueCallerJoin\r\nPrivilege: agent,all\r\nChannel: Local/18005550100@from-pstn-0000abcd;2\r\n"
    "CallerIDNum: +15551239999\r\nCallerIDName: Fuzz Caller\r\nUniqueid: {lid}.1\r\nLinkedid: {lid}.0\r\n"
    "Queue: support\r\nPosition: 1\r\nCount: 1\r\n\r\n"
)

garbage = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda s: s.encode("utf-8", "replace")),
    st.sampled_from(
        [
            b"Event: Hangup\r\nUniqueid",
            b"Response: Success\r\nActionID: nobody\r\n\r\n",
            b"no colon here\r\n\r\n",
            b"Event: \r\n\r\n",
            b"\r\n\r\n\r\n",
            b"\xff\xfe\x00\r\n\r\n",
            VALID_JOIN.format(lid="1").encode()[:57],
        ]
    ),
    st.integers(min_value=MAX_FRAME_BYTES + 1, max_value=MAX_FRAME_BYTES + 5000).map(lambda n: b"X" * n),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.lists(garbage, min_size=1, max_size=6))
async def test_bad_frames_never_stop_the_bridge(junk: list[bytes]) -> None:
    harness = await start_harness(logged_in=False)
    try:
        lid = f"17{random.randrange(10**8):08d}"
        for session in harness.pbx._sessions:
            for piece in junk:
                session.writer.write(piece)
            # whatever came before, a blank line ends it; the frames after it must be tracked
            session.writer.write(b"\r\n\r\n" + VALID_JOIN.format(lid=lid).encode())
        [offered] = await harness.bus.wait_for(CallOffered, lambda e: e.linkedid == f"{lid}.0", within=10)
        assert offered.caller_name == "Fuzz Caller"
        assert harness.bridge.connection.connects == 1  # no reconnect was needed
        assert harness.bridge._consumer is not None and not harness.bridge._consumer.done()
    finally:
        await harness.bridge.stop()
        await harness.pbx.stop()


async def test_ami_over_tls(tmp_path: Path) -> None:
    """`amis://`: the bridge verifies the PBX's certificate and speaks AMI over TLS."""
    key, cert = tmp_path / "pbx.key", tmp_path / "pbx.crt"
    await asyncio.to_thread(
        subprocess.run,
        [
            shutil.which("openssl") or "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    pbx = DemoPbx(secret=SECRET, time_scale=0.01)
    await pbx.start(tls=server_tls)
    endpoint = parse_ami_url(f"amis://crm:{SECRET}@127.0.0.1:{pbx.port}")
    bus = WatchedBus()
    bridge = AsteriskAdapter(endpoint, bus, ssl_context=ssl.create_default_context(cafile=str(cert)))
    try:
        await bridge.start()
        await asyncio.wait_for(bridge.resynced.wait(), 10)
        linkedid = await pbx.place_inbound_call(
            "+15551230001", "Alice Example", "support", answer_after_s=0.2, talk_s=0.2
        )
        [ended] = await bus.wait_for(CallEnded, lambda e: e.linkedid == linkedid)
        assert ended.outcome is CallOutcome.ANSWERED
        untrusting = AsteriskAdapter(endpoint, WatchedBus(), backoff_initial=0.05, backoff_max=0.05)
        await untrusting.start()  # the system's trust store does not know the self-signed certificate
        await asyncio.wait_for(untrusting.connection.attempt_failed.wait(), 10)
        assert untrusting.connection.connects == 0
        assert "certificate" in (untrusting.connection.last_error or "").lower()
        await untrusting.stop()
    finally:
        await bridge.stop()
        await pbx.stop()
