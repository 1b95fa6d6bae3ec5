"""An Asterisk-like FastAGI client: sends the agi_* environment as Asterisk 22 does (tests/fixtures/ami/*.fastagi.txt)
and answers each command with `200 result=…`, driven by what the simulated caller presses or says."""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SimulatedCall:
    caller_id: str
    script: str = "sample"
    keys: list[str] = field(default_factory=list)  # what the caller presses at each GET DATA ("" = says nothing)
    uniqueid: str = "1795462442.1"
    linkedid: str = "1795462442.0"
    hang_up_at: str | None = None  # the caller hangs up when a command starting with this arrives
    hang_up_how: str = "HANGUP"  # HANGUP line, "-1" (200 result=-1) or "close" (socket closed)
    recording: Path | None = None  # the audio the caller "says" when the IVR records
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    hung_up: bool = False

    def environment(self) -> bytes:
        env = {
            "agi_network": "yes",
            "agi_network_script": self.script,
            "agi_request": f"agi://127.0.0.1:4573/{self.script}",
            "agi_channel": "Local/18005550100@from-pstn-00000000;2",
            "agi_language": "en",
            "agi_type": "Local",
            "agi_uniqueid": self.uniqueid,
            "agi_version": "GIT-22-22.0.0-pre1-541-g69535d4837",
            "agi_callerid": self.caller_id or "unknown",
            "agi_calleridname": "Caller",
            "agi_callingpres": "0",
            "agi_callingani2": "0",
            "agi_callington": "0",
            "agi_callingtns": "0",
            "agi_dnid": "unknown",
            "agi_rdnis": "unknown",
            "agi_context": "from-pstn",
            "agi_extension": "18005550100",
            "agi_priority": "7",
            "agi_enhanced": "0.0",
            "agi_accountcode": "",
            "agi_threadid": "140308790785728",
        }
        return ("".join(f"{k}: {v}\n" for k, v in env.items()) + "\n").encode()

    def answer(self, command: str) -> str:
        verb = " ".join(command.split(" ")[:2])
        if verb == "GET DATA":
            pressed = self.keys.pop(0) if self.keys else ""
            return f"200 result={pressed}" if pressed else "200 result= (timeout)"
        if verb == "SET VARIABLE":
            match = re.match(r'SET VARIABLE "?([^" ]+)"? "(.*)"$', command)  # pyst2 quotes the name too
            assert match is not None, command
            self.variables[match.group(1)] = match.group(2).replace('\\"', '"')
            return "200 result=1"
        if verb == "GET VARIABLE":
            name = command.split(" ", 2)[2]
            if name == "CHANNEL(linkedid)":
                return f"200 result=1 ({self.linkedid})"
            value = self.variables.get(name)
            return f"200 result=1 ({value})" if value is not None else "200 result=0"
        if verb == "RECORD FILE":
            path = command.split(" ")[2]
            if self.recording is not None:
                shutil.copy(self.recording, f"{path}.wav")
            return "200 result=0 (timeout) endpos=24000"
        if verb.startswith("HANGUP"):
            self.hung_up = True
            return "200 result=1"
        if verb in ("STREAM FILE", "SAY NUMBER", "EXEC VoiceMail"):
            return "200 result=0 endpos=8000" if verb == "STREAM FILE" else "200 result=0"
        return "510 Invalid or unknown command"

    async def run(self, port: int) -> SimulatedCall:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(self.environment())
        try:
            while True:
                raw = await asyncio.wait_for(reader.readline(), 10)
                if not raw:
                    break
                command = raw.decode().rstrip("\n")
                self.commands.append(command)
                if self.hang_up_at is not None and command.startswith(self.hang_up_at):
                    self.hung_up = True
                    if self.hang_up_how == "close":
                        break
                    writer.write(b"HANGUP\n" if self.hang_up_how == "HANGUP" else b"200 result=-1\n")
                    await writer.drain()
                    self.hang_up_at = None
                    continue
                writer.write(self.answer(command).encode() + b"\n")
                await writer.drain()
                if command == "HANGUP":
                    break
        finally:
            writer.close()
            await writer.wait_closed()
        return self

    def played(self) -> list[str]:
        return [c.split(" ")[2] for c in self.commands if c.startswith(("STREAM FILE", "GET DATA"))]
