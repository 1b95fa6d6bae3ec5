"""The mapping of a PBX's user names (or extensions) to CRM users, one row per (PBX, PBX user)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base, new_id, utcnow


class PbxUserMapping(Base):
    __tablename__ = "pbx_user_mappings"
    __table_args__ = (UniqueConstraint("pbx", "pbx_user_key", name="uq_pbx_user_mappings_pbx_user"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    pbx: Mapped[str] = mapped_column(String(20))
    pbx_user: Mapped[str] = mapped_column(String(200))  # as the PBX writes it, shown to admins
    pbx_user_key: Mapped[str] = mapped_column(String(200))  # casefolded, what events are matched by
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
