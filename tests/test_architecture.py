"""The import rules of the architecture: crm_core imports none of ours; the bridge never touches the database or
the web; ivr, sms_gateway and recordings talk to each other only through crm_core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SIBLINGS = {"cti_bridge", "ivr", "sms_gateway", "recordings"}
OURS = SIBLINGS | {"crm_core", "agent_desktop"}
BANNED = {
    "crm_core": OURS - {"crm_core"},
    "cti_bridge": (OURS - {"cti_bridge", "crm_core"}) | {"sqlalchemy", "quart", "socketio"},
    **{package: OURS - {package, "crm_core"} for package in SIBLINGS - {"cti_bridge"}},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(BANNED))
def test_package_imports_only_what_the_architecture_allows(package: str) -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in imports_of(path)
        if name.split(".")[0] in BANNED[package]
    ]
    assert offences == []


def test_only_ami_imports_panoramisk_in_the_bridge() -> None:
    users = {
        path.name
        for path in (ROOT / "cti_bridge").rglob("*.py")
        if any(name.split(".")[0] == "panoramisk" for _, name in imports_of(path))
    }
    assert users == {"ami.py"}


def test_only_the_notifier_emits_to_browsers() -> None:
    emitters = {
        path.name for path in (ROOT / "agent_desktop").rglob("*.py") if ".emit(" in path.read_text(encoding="utf-8")
    }
    assert emitters == {"notifier.py"}
