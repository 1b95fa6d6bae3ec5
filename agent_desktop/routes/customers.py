"""Customers: the 360 page, creating (from a pop, linked to its call), editing, notes and merging."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app, render_template, url_for

from agent_desktop.auth import roles_allowed
from agent_desktop.pop import customer_context
from agent_desktop.routes.common import STAFF, actor, json_body, runtime
from crm_core.calls.service import link_customer
from crm_core.customers.errors import DuplicateCustomer
from crm_core.customers.schemas import (
    CustomerChange,
    CustomerIn,
    MergeRequest,
    NewCustomerRequest,
    NoteIn,
    PhoneIn,
)
from crm_core.customers.service import add_note, create_customer, get_customer, merge_customers, update_customer
from crm_core.errors import ValidationFailed
from crm_core.timeline import customer_timeline
from crm_core.users.models import Role

blueprint = Blueprint("customers", __name__)
EDITABLE = ("name", "title", "street", "city", "postal_code", "country", "timezone", "language", "vip_tier")


@blueprint.get("/customers/<customer_id>")
@roles_allowed(*STAFF)
async def customer_page(customer_id: str) -> Any:
    me = actor()
    async with runtime().sessions() as db:
        customer = await get_customer(session=db, actor=me, customer_id=customer_id)
        context = await customer_context(db, customer.id)
        timeline = await customer_timeline(session=db, actor=me, customer_id=customer.id, limit=100)
    return await render_template("customer.html", customer=customer, context=context, timeline=timeline)


@blueprint.post("/api/customers")
@roles_allowed(*STAFF, api=True)
async def api_create_customer() -> Any:
    data = await json_body()
    settings = runtime().settings
    request_in = NewCustomerRequest.model_validate(data)  # every field checked, linkedid included
    customer_in = CustomerIn(
        name=request_in.name,
        phones=[PhoneIn(number=request_in.phone)] if request_in.phone else [],
        emails=[request_in.email] if request_in.email else [],
    )
    try:
        async with runtime().unit_of_work() as db:
            customer = await create_customer(
                session=db,
                actor=actor(),
                data=customer_in,
                region=settings.default_region,
                allow_duplicate=request_in.allow_duplicate,
            )
            linkedid = data.get("linkedid")
            if isinstance(linkedid, str) and linkedid:
                await link_customer(session=db, actor=actor(), linkedid=linkedid, customer_id=customer.id)
    except DuplicateCustomer as exc:
        return exc.to_dict(), 409
    if isinstance(data.get("linkedid"), str):
        await current_app.extensions["pops"].refresh(data["linkedid"])
    return {
        "id": customer.id,
        "name": customer.name,
        "url": url_for("customers.customer_page", customer_id=customer.id),
    }, 201


@blueprint.post("/api/customers/<customer_id>")
@roles_allowed(*STAFF, api=True)
async def api_update_customer(customer_id: str) -> Any:
    change = CustomerChange.model_validate(await json_body())
    if change.name is None and "name" in change.model_fields_set:
        raise ValidationFailed("name cannot be empty.", field="name")
    async with runtime().unit_of_work() as db:
        me = actor()
        current = await get_customer(session=db, actor=me, customer_id=customer_id)
        fields: dict[str, Any] = {
            "name": current.name,
            "kind": current.kind,
            "parent_id": current.parent_id,
            "phones": [PhoneIn(number=p.e164, label=p.label) for p in current.phones],
            "emails": [e.email for e in current.emails],
            "tags": [t.name for t in current.tags],
            "owner_id": current.owner_id,
            "custom_fields": dict(current.custom_fields or {}),
            **{k: getattr(current, k) for k in EDITABLE if k != "name"},
        }
        fields.update({k: v or None for k, v in change.model_dump(exclude_unset=True).items() if k in EDITABLE})
        if change.phones is not None:
            fields["phones"] = [PhoneIn(number=n) for n in change.phones if n]
        customer = await update_customer(
            session=db,
            actor=me,
            customer_id=customer_id,
            data=CustomerIn(**fields),
            region=runtime().settings.default_region,
        )
    return {"id": customer.id, "name": customer.name}


@blueprint.post("/api/customers/<customer_id>/notes")
@roles_allowed(*STAFF, api=True)
async def api_add_note(customer_id: str) -> Any:
    note_in = NoteIn.model_validate(await json_body())
    async with runtime().unit_of_work() as db:
        note = await add_note(session=db, actor=actor(), customer_id=customer_id, body=note_in.body)
    return {"id": note.id}, 201


@blueprint.post("/api/customers/<customer_id>/merge")
@roles_allowed(Role.SUPERVISOR, api=True)
async def api_merge(customer_id: str) -> Any:
    merge = MergeRequest.model_validate(await json_body())
    async with runtime().unit_of_work() as db:
        kept = await merge_customers(session=db, actor=actor(), keep_id=customer_id, merge_id=merge.merge_id)
    return {"id": kept.id}
