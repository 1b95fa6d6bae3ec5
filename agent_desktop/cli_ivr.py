"""CLI commands contributed by one part of the product; `agent_desktop.cli` adds every entry of COMMANDS."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
