"""Call recordings taken into storage, the jobs that ingest and transcribe them, and the transcripts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base, new_id, utcnow


class RecordingStatus(StrEnum):
    PENDING = "pending"  # reported by the PBX, not in storage yet
    STORED = "stored"
    FAILED = "failed"  # given up on after the last attempt; `reason` says why
    DELETED = "deleted"  # removed by the queue's retention rule (the row stays so it is not taken in again)


class JobKind(StrEnum):
    INGEST = "ingest"
    TRANSCRIBE = "transcribe"


class JobStatus(StrEnum):
    QUEUED = "queued"  # waiting for its due time (a retry waits with backoff)
    WORKING = "working"  # claimed; the worker renews its lease while it works
    DONE = "done"
    FAILED = "failed"


class Recording(Base):
    """One call's recording: what the PBX named it, and once stored, where, its format, length and checksum."""

    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_logs.id", ondelete="CASCADE"), unique=True)
    source_ref: Mapped[str] = mapped_column(String(255))  # the file name the PBX reported (MIXMONITOR_FILENAME)
    status: Mapped[str] = mapped_column(String(16), default=RecordingStatus.PENDING.value)
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
    storage_key: Mapped[str | None] = mapped_column(String(255), default=None)
    # mono | stereo (MixMonitor's D option: the caller's side left, the agent's right) | split (its r()/t() files)
    layout: Mapped[str | None] = mapped_column(String(16), default=None)
    audio_format: Mapped[str | None] = mapped_column(String(16), default=None)
    channels: Mapped[int | None] = mapped_column(Integer, default=None)
    sample_rate: Mapped[int | None] = mapped_column(Integer, default=None)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stored_at: Mapped[datetime | None] = mapped_column(default=None)


class RecordingJob(Base):
    """Work on a recording (ingest it, transcribe it): claimed by one worker at a time, retried with backoff."""

    __tablename__ = "recording_jobs"
    __table_args__ = (Index("ix_recording_jobs_kind_status_due", "kind", "status", "due_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
    claim_token: Mapped[str | None] = mapped_column(String(32), default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    # what the file looked like at the last look: a file still growing is not taken yet
    seen_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Transcript(Base):
    """What was said on a recorded call: lines with speaker labels and word timestamps; `text` is what is searched.
    A supervisor's correction replaces `text` and the lines' words; the recogniser's original stays in
    `original_text`."""

    __tablename__ = "transcripts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), unique=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_logs.id", ondelete="CASCADE"), index=True)
    # SQLite's FTS5 row of this transcript (PostgreSQL searches the text itself)
    search_key: Mapped[int | None] = mapped_column(Integer, default=None, unique=True)
    text: Mapped[str] = mapped_column(Text, default="")
    # [{"speaker": "agent"|"customer"|null, "start": s, "end": s, "text": str, "words": [[word, start, end, conf]]}]
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    model: Mapped[str] = mapped_column(String(200), default="")
    audio_s: Mapped[float] = mapped_column(Float, default=0.0)
    took_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    original_text: Mapped[str | None] = mapped_column(Text, default=None)
    corrected_by: Mapped[str | None] = mapped_column(String(32), default=None)
    corrected_at: Mapped[datetime | None] = mapped_column(default=None)


class KeywordPhrase(Base):
    """A phrase supervisors want to hear about ("cancel my contract", a competitor's name)."""

    __tablename__ = "keyword_phrases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    phrase: Mapped[str] = mapped_column(String(200), unique=True)  # its words, lower case, one space apart
    created_by: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CallKeywordHit(Base):
    """A supervisor's phrase heard on a call: the call is flagged; `at_s` is where in the recording."""

    __tablename__ = "call_keyword_hits"
    __table_args__ = (Index("ix_call_keyword_hits_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_logs.id", ondelete="CASCADE"), index=True)
    transcript_id: Mapped[str] = mapped_column(ForeignKey("transcripts.id", ondelete="CASCADE"))
    phrase: Mapped[str] = mapped_column(String(200))
    speaker: Mapped[str | None] = mapped_column(String(16), default=None)
    at_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RetentionRule(Base):
    """How long a queue's recordings and transcripts are kept (days after the call ended)."""

    __tablename__ = "recording_retention"

    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    days: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str | None] = mapped_column(String(32), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LegalHold(Base):
    """Recordings of a customer (all their calls) or of one call that must not be deleted while the hold stands."""

    __tablename__ = "legal_holds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    customer_id: Mapped[str | None] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), default=None, index=True
    )
    call_id: Mapped[str | None] = mapped_column(
        ForeignKey("call_logs.id", ondelete="CASCADE"), default=None, index=True
    )
    reason: Mapped[str] = mapped_column(String(500))
    placed_by: Mapped[str | None] = mapped_column(String(32), default=None)
    placed_at: Mapped[datetime] = mapped_column(default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(default=None)


class TranscriptionOptOut(Base):
    """Transcription switched off: for one call (a caller who declines; set by the agent on it or a supervisor)
    or for a whole queue (an admin). The recording itself is still kept under its queue's retention."""

    __tablename__ = "transcription_optouts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    call_id: Mapped[str | None] = mapped_column(
        ForeignKey("call_logs.id", ondelete="CASCADE"), default=None, unique=True
    )
    queue: Mapped[str | None] = mapped_column(String(64), default=None, unique=True)
    set_by: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
