"""Customers: the 360 page, creating (from a pop, linked to its call), editing, notes and merging."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app, redirect, render_template, request, url_for
from sqlalchemy import select

from agent_desktop.auth import roles_allowed
from agent_desktop.pop import customer_context
from agent_desktop.routes.common import STAFF, actor, json_body, runtime
from crm_core.calls.service import get_call, link_customer
from crm_core.customers.errors import DuplicateCustomer
from crm_core.customers.models import Customer
from crm_core.customers.schemas import (
    CustomerChange,
    CustomerIn,
    MergeRequest,
    NewCustomerRequest,
    NoteIn,
    PhoneIn,
)
from crm_core.customers.search import CustomerQuery, search_customers
from crm_core.customers.service import (
    add_note,
    assign_owner,
    create_customer,
    get_customer,
    merge_customers,
    record_customer_view,
    update_customer,
)
from crm_core.errors import ValidationFailed
from crm_core.inputs import check_text
from crm_core.timeline import customer_timeline
from crm_core.users.models import Role, User
from crm_core.users.service import get_user

blueprint = Blueprint("customers", __name__)
EDITABLE = ("name", "title", "street", "city", "postal_code", "country", "timezone", "language", "vip_tier")


@blueprint.get("/customers/<customer_id>")
@roles_allowed(*STAFF)
async def customer_page(customer_id: str) -> Any:
    me = actor()
    async with runtime().unit_of_work() as db:  # the view is audited
        customer = await get_customer(session=db, actor=me, customer_id=customer_id)
        survivor = customer
        for _ in range(20):  # a record merged away leads to the one it was merged into (chains are short)
            if not survivor.merged_into_id:
                break
            survivor = await get_customer(session=db, actor=me, customer_id=survivor.merged_into_id)
        if survivor.id != customer.id:
            return redirect(url_for("customers.customer_page", customer_id=survivor.id, merged_from=customer.name))
        await record_customer_view(session=db, actor=me, customer_id=customer.id)
        context = await customer_context(db, customer.id)
        timeline = await customer_timeline(session=db, actor=me, customer_id=customer.id, limit=100)
        assignable = (
            list(
                await db.scalars(
                    select(User).where(User.is_active.is_(True), User.role == Role.AGENT.value).order_by(User.username)
                )
            )
            if me.role is not Role.AGENT
            else []
        )
        owner = await db.get(User, customer.owner_id) if customer.owner_id else None
        company = await db.get(Customer, customer.parent_id) if customer.parent_id else None
        contacts = list(
            await db.scalars(
                select(Customer)
                .where(Customer.parent_id == customer.id, Customer.merged_into_id.is_(None))
                .order_by(Customer.name)
                .limit(100)
            )
        )
    return await render_template(
        "customer.html",
        customer=customer,
        context=context,
        timeline=timeline,
        owner=owner,
        company=company,
        contacts=contacts,
        assignable=assignable,
        merged_from=request.args.get("merged_from", "")[:200],
    )


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
    linkedid = data.get("linkedid")
    try:
        async with runtime().unit_of_work() as db:
            if isinstance(linkedid, str) and linkedid:
                # validate, then act: a call this agent did not answer refuses the whole request (403)
                await get_call(session=db, actor=actor(), linkedid=linkedid)
            customer = await create_customer(
                session=db,
                actor=actor(),
                data=customer_in,
                region=settings.default_region,
                allow_duplicate=request_in.allow_duplicate,
            )
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
    # JSON from scripts, a form from the 360 page's merge box (htmx)
    merge = MergeRequest.model_validate(await json_body() if request.is_json else dict(await request.form))
    async with runtime().unit_of_work() as db:
        kept = await merge_customers(session=db, actor=actor(), keep_id=customer_id, merge_id=merge.merge_id)
    return {"id": kept.id}, 200, {"HX-Refresh": "true"}


def _search_query() -> CustomerQuery:
    args = request.args
    page = args.get("page", "1")
    if not page.isdigit() or len(page) > 4:
        raise ValidationFailed("The page must be a whole number.", field="page")
    return CustomerQuery(
        text=args.get("q", ""),
        company_id=args.get("company") or None,
        tag=args.get("tag") or None,
        owner_id=args.get("owner") or None,
        unowned=args.get("pool") == "1",
        page=int(page),
    )


@blueprint.get("/customers")
@roles_allowed(*STAFF)
async def customer_list() -> Any:
    """The customer list and the top bar's search: any written form of a name, phone number or email."""
    async with runtime().sessions() as db:
        found = await search_customers(
            session=db, actor=actor(), query=_search_query(), region=runtime().settings.default_region
        )
    return await render_template("customers.html", found=found, args=request.args)


@blueprint.get("/api/customers")
@roles_allowed(*STAFF, api=True)
async def api_search_customers() -> Any:
    async with runtime().sessions() as db:
        found = await search_customers(
            session=db, actor=actor(), query=_search_query(), region=runtime().settings.default_region
        )
        customers = [
            {
                "id": c.id,
                "name": c.name,
                "kind": c.kind,
                "phones": list(c.phones),
                "emails": list(c.emails),
                "url": url_for("customers.customer_page", customer_id=c.id),
            }
            for c in found.customers
        ]
    return {"customers": customers, "page": found.page, "has_next": found.has_next, "matched_by": found.matched_by}


@blueprint.post("/api/customers/<customer_id>/claim")
@roles_allowed(*STAFF, api=True)
async def api_claim(customer_id: str) -> Any:
    """An agent takes a customer from the pool; it stays theirs while they keep in contact."""
    me = actor()
    async with runtime().unit_of_work() as db:
        customer = await assign_owner(session=db, actor=me, customer_id=customer_id, owner_id=me.user_id)
    # from the customer page (htmx): show the page again with its new owner
    return {"id": customer.id, "owner_id": customer.owner_id}, 200, {"HX-Refresh": "true"}


@blueprint.post("/api/customers/<customer_id>/owner")
@roles_allowed(Role.SUPERVISOR, api=True)
async def api_reassign(customer_id: str) -> Any:
    """A supervisor gives a customer to another agent, or back to the pool (owner_id null or empty)."""
    data = await json_body() if request.is_json else dict(await request.form)  # JSON, or the 360 page's form
    owner_id = data.get("owner_id") or None
    if owner_id is not None and not isinstance(owner_id, str):
        raise ValidationFailed("owner_id must be a user id or null.", field="owner_id")
    if owner_id is not None:
        owner_id = check_text(owner_id, field="owner_id", max_length=32)
    async with runtime().unit_of_work() as db:
        if owner_id is not None:
            await get_user(session=db, user_id=owner_id)
        customer = await assign_owner(session=db, actor=actor(), customer_id=customer_id, owner_id=owner_id)
    return {"id": customer.id, "owner_id": customer.owner_id}, 200, {"HX-Refresh": "true"}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]


def _custom_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in _lines(text):
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise ValidationFailed(f"Write each custom field as 'name: value' ({line[:40]!r} is not).", field="custom")
        fields[key.strip()[:64]] = value.strip()
    return fields


@blueprint.post("/customers/<customer_id>/edit")
@roles_allowed(*STAFF, api=True)
async def edit_customer(customer_id: str) -> Any:
    """The 360 page's labelled edit form (htmx): every field of the record; the page reloads with what was saved."""
    form = await request.form
    region = runtime().settings.default_region
    async with runtime().unit_of_work() as db:
        me = actor()
        current = await get_customer(session=db, actor=me, customer_id=customer_id)
        parent_id = None
        company = form.get("company", "").strip()
        if company:
            found = await search_customers(session=db, actor=me, query=CustomerQuery(text=company), region=region)
            exact = [c for c in found.customers if c.kind == "company" and c.name.lower() == company.lower()]
            if not exact or exact[0].id == current.id:
                raise ValidationFailed(f"There is no company named {company[:80]!r}; create it first.", field="company")
            parent_id = exact[0].id
        phones = []
        for line in _lines(form.get("phones", "")):
            number, _, label = line.partition(",")
            phones.append(PhoneIn(number=number.strip(), label=label.strip() or "mobile"))
        data = CustomerIn(
            name=form.get("name", ""),
            kind=form.get("kind", "person"),  # type: ignore[arg-type]
            parent_id=parent_id,
            title=form.get("title") or None,
            phones=phones,
            emails=_lines(form.get("emails", "")),
            street=form.get("street") or None,
            city=form.get("city") or None,
            postal_code=form.get("postal_code") or None,
            country=form.get("country") or None,
            timezone=form.get("timezone") or None,
            language=form.get("language") or None,
            tags=[t.strip() for t in form.get("tags", "").split(",") if t.strip()],
            owner_id=current.owner_id,
            custom_fields=_custom_fields(form.get("custom", "")),
            vip_tier=form.get("vip_tier") or None,
        )
        await update_customer(session=db, actor=me, customer_id=customer_id, data=data, region=region)
    return "", 204, {"HX-Refresh": "true"}


@blueprint.get("/customers/<customer_id>/merge-candidates")
@roles_allowed(Role.SUPERVISOR)
async def merge_candidates(customer_id: str) -> Any:
    """Search for the duplicate to fold into this customer (the 360 page's merge box, htmx)."""
    async with runtime().sessions() as db:
        found = await search_customers(
            session=db,
            actor=actor(),
            query=CustomerQuery(text=request.args.get("q", "")),
            region=runtime().settings.default_region,
        )
    others = [c for c in found.customers if c.id != customer_id] if request.args.get("q", "").strip() else []
    return await render_template("customer_merge_candidates.html", customer_id=customer_id, others=others)


@blueprint.get("/customers/companies")
@roles_allowed(*STAFF)
async def company_options() -> Any:
    """Companies whose name starts like the text: the options of the company field (htmx)."""
    async with runtime().sessions() as db:
        found = await search_customers(
            session=db,
            actor=actor(),
            query=CustomerQuery(text=request.args.get("company", "")),
            region=runtime().settings.default_region,
        )
    names = [c.name for c in found.customers if c.kind == "company"]
    return await render_template("company_options.html", names=names)
