import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_desktop.cli import cli
from crm_core.customers.importer import ImportFileError, export_customers_csv, import_customers_csv
from crm_core.customers.models import Customer, CustomerPhone
from crm_core.db import make_sessionmaker, unit_of_work
from crm_core.users.service import SYSTEM

GOOD_AND_BAD = """name,kind,company,phones,emails,city,country,timezone,tags,custom.plan
Alice Example,person,Acme,+1 555 123 0001,alice@acme.test,Springfield,US,America/New_York,vip;gold,premium
,person,,+15551230002,,,,,,
Bob Bad Phone,person,,12,,,,,,
Carol,person,Acme,+15551230003;(555) 123-0004,carol@acme.test,,US,,,
Dup Of Alice,person,,555-123-0001,,,,,,
Eve Bad Mail,person,,,eve@,,,,,
Frank,person,,+15551230005,,,US,Nowhere/City,,
Gina,robot,,+15551230006,,,,,,
"""


def write(tmp_path: Path, text: str, name: str = "customers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Customer)) or 0)


async def test_import_reports_each_bad_row_and_imports_the_rest(engine: AsyncEngine, tmp_path: Path) -> None:
    sessions = make_sessionmaker(engine)
    before = await _count(engine)
    seen: list[tuple[int, int]] = []
    report = await import_customers_csv(
        write(tmp_path, GOOD_AND_BAD),
        sessions=sessions,
        actor=SYSTEM,
        region="US",
        progress=lambda done, total: seen.append((done, total)),
        batch_size=3,
    )
    assert report.total == 8 and report.imported == 2
    assert [(r.row, r.reason.split(":")[0]) for r in report.rejected] == [
        (3, "name is empty"),
        (4, "'12' has the wrong number of digits for its country."),
        (6, "duplicate"),
        (7, "'eve@' is not an email address."),
        (8, "'Nowhere/City' is not a time zone (e.g. Europe/Paris)."),
        (9, "kind"),
    ]
    assert seen[-1] == (8, 8)
    # Rejected rows wrote nothing; Acme was created once, as the company of both good rows.
    assert await _count(engine) == before + 3
    async with unit_of_work(sessions) as session:
        alice = await session.scalar(select(Customer).where(Customer.name == "Alice Example"))
        assert alice is not None and alice.custom_fields == {"plan": "premium"}
        assert sorted(t.name for t in alice.tags) == ["gold", "vip"]
        company = await session.get(Customer, alice.parent_id)
        assert company is not None and company.kind == "company" and company.name == "Acme"
        phones = set(await session.scalars(select(CustomerPhone.e164)))
        assert {"+15551230001", "+15551230003", "+15551230004"} <= phones
        assert "+15551230002" not in phones and "+15551230005" not in phones
        out = io.StringIO()
        assert await export_customers_csv(out, session=session, actor=SYSTEM) >= 3
    exported = out.getvalue().splitlines()
    assert exported[0].startswith("name,kind,company,title,phones,emails")
    assert any(line.startswith("Carol,person,Acme,,+15551230003;+15551230004,carol@acme.test") for line in exported)
    # Re-importing the export: everything is a duplicate now, nothing new is written.
    again = await import_customers_csv(
        write(tmp_path, out.getvalue(), "again.csv"), sessions=sessions, actor=SYSTEM, region="US"
    )
    assert again.imported <= 1  # only the company row, which has no phone or email to collide on
    assert all("duplicate" in r.reason for r in again.rejected)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("first,last\nA,B\n", "has no 'name' column"),
        ("name,colour\nA,blue\n", r"Unknown column\(s\) colour"),
        (b"name\n\xff\xfe\n", "not"),
    ],
)
async def test_unreadable_files_write_nothing(
    engine: AsyncEngine, tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    before = await _count(engine)
    with pytest.raises(ImportFileError, match=message):
        await import_customers_csv(path, sessions=make_sessionmaker(engine), actor=SYSTEM, region="US")
    assert await _count(engine) == before


def test_cli_import_export_demo_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    result = runner.invoke(cli, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "one-time password" in result.output
    result = runner.invoke(cli, ["import", "customers", str(write(tmp_path, GOOD_AND_BAD))])
    assert result.exit_code == 0, result.output
    assert "Imported 2 of 8 rows; rejected 6." in result.output
    assert "wrong number of digits" in result.output
    result = runner.invoke(cli, ["import", "customers", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and "Cannot read" in result.output and "Traceback" not in result.output
    out = tmp_path / "out.csv"
    result = runner.invoke(cli, ["export", "customers", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().count("\n") == 4  # header, Acme, Alice, Carol
    # Demo data keys on the demo caller's number, which this database now has from the import.
    result = runner.invoke(cli, ["demo-data", "--customers", "20"])
    assert result.exit_code == 0 and "present already; 6 user(s) added" in result.output
    monkeypatch.setenv("CRM_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    assert runner.invoke(cli, ["migrate"]).exit_code == 0
    result = runner.invoke(cli, ["demo-data", "--customers", "20"])
    assert result.exit_code == 0, result.output
    assert "Demo data ready: 6 user(s), 20 customers" in result.output
    result = runner.invoke(cli, ["demo-data", "--customers", "20"])
    assert "present already" in result.output
    result = runner.invoke(cli, ["create-user", "zed", "--role", "agent", "--extension", "1001"])
    assert result.exit_code == 2 and "Extension 1001 already belongs" in result.output
