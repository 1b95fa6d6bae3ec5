"""Who may act on a live call: the PBX adapter's view of it, put to the calls domain's one rule.

The adapter's snapshot says who talks on the call and who is being rung now; crm_core.calls.service's
check_agent_on_call decides (the same rule the call log's answered legs are put to once the call has ended).
"""

from __future__ import annotations

from crm_core.calls.service import check_agent_on_call
from crm_core.users.models import Role
from crm_core.users.service import Actor, require_role
from cti_bridge.adapter import CommandError, CommandErrorCode, PbxAdapter

STAFF = (Role.AGENT, Role.SUPERVISOR)


def check_on_live_call(pbx: PbxAdapter, actor: Actor, linkedid: str, *, rung_may: bool = False) -> None:
    """Refuse (NotYourCall) an agent acting on a live call it is not on: the agent talking on it may; with
    `rung_may` (hang up: a ringing agent declines) so may the agents it is ringing now. Supervisors and admins may.

    The PBX is the truth about live calls, so the adapter's snapshot decides, not the call log. An adapter with no
    live view in this process (a web-only worker's RemotePbx: its snapshot is empty and not connected) sends the
    command to the CTI process, whose adapter binds every call command to the agent's own channel on that call.
    """
    require_role(actor, *STAFF)
    snapshot = pbx.snapshot()
    live = next((call for call in snapshot.calls if call.linkedid == linkedid), None)
    if live is None:
        if snapshot.connected:
            raise CommandError(CommandErrorCode.CALL_NOT_FOUND, "That call has ended.")
        return
    agents = {live.agent} if live.agent else set()
    if rung_may:
        agents.update(live.ringing_agents)
    check_agent_on_call(actor=actor, linkedid=linkedid, agents=agents)
