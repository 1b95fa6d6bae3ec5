"""Wires the IVR into a process: flows from the flow folder, the FastAGI server, speech, the callback dialer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from agent_desktop.runtime import Runtime
from crm_core.customers.lookup import CallerIdLookup
from ivr.engine import CrmContext
from ivr.fastagi import FastAgiServer
from ivr.flow import Flow, FlowError, load_flow
from ivr.speech import VoskRecogniser, default_model_path

log = logging.getLogger(__name__)
BUILT_IN_FLOWS = Path(__file__).resolve().parent.parent / "ivr" / "flows"


def load_flows(folder: Path) -> dict[str, Flow]:
    """Every flow file of the folder; one bad file stops start-up with its line and problem."""
    flows: dict[str, Flow] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml"), *folder.glob("*.toml")]):
        flow = load_flow(path)
        flows[flow.name] = flow
    if not flows:
        raise FlowError(f"{folder}: no flow files (*.yaml, *.toml) found.")
    return flows


@dataclass
class Ivr:
    server: FastAgiServer
    crm: CrmContext
    flows: dict[str, Flow]
    port: int

    async def stop(self) -> None:
        await self.server.stop()
        await self.crm.lookup.close()


def ivr_context(runtime: Runtime) -> tuple[dict[str, Flow], CrmContext]:
    settings = runtime.settings
    folder = settings.ivr_flows_dir or BUILT_IN_FLOWS
    flows = load_flows(folder)
    model = settings.vosk_model_path or default_model_path()
    speech = VoskRecogniser(model) if model is not None else None
    if speech is None:
        log.info("no Vosk model (CRM_VOSK_MODEL_PATH): IVR menus take keys only")
    crm = CrmContext(
        sessions=runtime.sessions,
        lookup=CallerIdLookup(runtime.engine, settings.default_region),
        region=settings.default_region,
        speech=speech,
        bus=runtime.bus,  # the pop gets the IVR path even from an AMI user that reads no VarSet
    )
    return flows, crm


async def start_ivr(runtime: Runtime, *, port: int | None = None) -> Ivr:
    settings = runtime.settings
    flows, crm = ivr_context(runtime)
    default = "sample" if "sample" in flows else next(iter(flows))
    server = FastAgiServer(
        flows,
        crm,
        default_flow=default,
        recordings=settings.data_dir / "ivr-recordings",
        answer_timeout_s=settings.agi_answer_timeout_s,
        max_sessions=settings.agi_max_sessions,
    )
    bound = await server.start(settings.agi_host, settings.agi_port if port is None else port)
    log.info("FastAGI on agi://%s:%s/ with flows %s", settings.agi_host, bound, ", ".join(sorted(flows)))
    return Ivr(server=server, crm=crm, flows=flows, port=bound)
