"""Users of the product (agents, supervisors, marketers, admins) and their roles."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base, new_id, utcnow


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    MARKETER = "marketer"
    ADMIN = "admin"


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    # The agent's device extension on the PBX (e.g. "1001"); one user per extension.
    extension: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    queues: Mapped[list[Any]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
