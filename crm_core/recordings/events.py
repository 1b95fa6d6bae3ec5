"""Recording domain events: a recording taken into storage or given up on, a transcript stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crm_core.bus import register_event


@register_event
@dataclass(frozen=True, slots=True)
class RecordingStored:
    recording_id: str
    linkedid: str
    duration_s: float
    stored_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class RecordingFailed:
    recording_id: str
    linkedid: str
    reason: str
    failed_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class TranscriptStored:
    transcript_id: str
    recording_id: str
    linkedid: str
    customer_id: str | None
    stored_at: datetime


@register_event
@dataclass(frozen=True, slots=True)
class KeywordHeard:
    """A supervisor's phrase was said on a call (found in its transcript)."""

    linkedid: str
    phrase: str
    speaker: str | None
    at_s: float
    customer_id: str | None
    agent: str | None
    heard_at: datetime
