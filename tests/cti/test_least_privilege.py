"""A least-privilege AMI user (`read = call,agent`): no VarSet reaches the bridge, yet the pop has the IVR path and
choices, told by the product's own FastAGI session over the bus."""

from __future__ import annotations

import asyncio
from pathlib import Path

from crm_core.calls.events import AgentRinging, CallStarted
from cti_bridge.demo_pbx import DemoPbx
from cti_bridge.normalize import VariableSet
from tests.cti.helpers import SECRET, Harness, WatchedBus, make_bridge
from tests.ivr.asterisk import SimulatedCall
from tests.ivr.conftest import make_ivr


async def test_the_pop_keeps_the_ivr_path_with_an_ami_user_that_reads_call_and_agent_only(tmp_path: Path) -> None:
    pbx = DemoPbx(secret=SECRET, time_scale=0.01, seed=7, read_classes=frozenset({"call", "agent"}))
    await pbx.start()
    bus = WatchedBus()
    bridge = make_bridge(pbx, bus)
    harness = Harness(pbx, bridge, bus)
    ivr = await make_ivr(tmp_path)
    ivr.server.crm.bus = bus  # as crm serve wires it: the IVR and the bridge share the bus
    try:
        await bridge.start()
        await asyncio.wait_for(bridge.resynced.wait(), 10)
        done = asyncio.Event()
        linkedid = await pbx.place_inbound_call(
            "+15551230001", "Alice Example", "support", agent="1001", answer_after_s=40, talk_s=10, ivr_done=done
        )
        await bus.wait_for(CallStarted, lambda e: e.linkedid == linkedid)
        [caller] = [c for c in pbx.channels.values() if c.linkedid == linkedid and c.name.endswith(";2")]
        call = await SimulatedCall("+15551230001", uniqueid=caller.uniqueid, linkedid=linkedid).run(ivr.port)
        assert call.variables["CRM_PATH"] == "hours>identify>vip>to-priority"
        done.set()  # the dialplan goes on into the queue
        [pop] = await bus.wait_for(AgentRinging, lambda e: e.linkedid == linkedid)
        ivr_vars = dict(pop.crm_vars)
        assert ivr_vars["CRM_PATH"] == "hours>identify>vip>to-priority"
        assert ivr_vars["CRM_CUSTOMER_ID"] == ivr.ids["alice"] and ivr_vars["CRM_VIP"] == "gold"
        # the PBX sent the IVR's variables as VarSet (class dialplan): none reached this AMI user
        assert not [e for e in harness.pbx_events if isinstance(e, VariableSet)]
    finally:
        await bridge.stop()
        await pbx.stop()
        await ivr.close()
