"""recordings taken into storage, their ingest and transcription jobs, transcripts with full-text search

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-03 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite: an FTS5 table keyed by the transcript's own search key (not its rowid, which VACUUM may renumber), kept
# by triggers. PostgreSQL: a GIN index on the words of the text ('simple': no stemming, any language's words).
_SQLITE_UP = [
    "CREATE VIRTUAL TABLE transcripts_fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 2')",
    """CREATE TRIGGER transcripts_search_insert AFTER INSERT ON transcripts BEGIN
         UPDATE transcripts SET search_key =
           (SELECT coalesce(max(search_key), 0) + 1 FROM transcripts) WHERE id = new.id;
         INSERT INTO transcripts_fts (rowid, text) SELECT search_key, new.text FROM transcripts WHERE id = new.id;
       END""",
    """CREATE TRIGGER transcripts_search_update AFTER UPDATE OF text ON transcripts BEGIN
         DELETE FROM transcripts_fts WHERE rowid = old.search_key;
         INSERT INTO transcripts_fts (rowid, text) VALUES (new.search_key, new.text);
       END""",
    """CREATE TRIGGER transcripts_search_delete AFTER DELETE ON transcripts BEGIN
         DELETE FROM transcripts_fts WHERE rowid = old.search_key;
       END""",
]
_SQLITE_DOWN = [
    "DROP TRIGGER transcripts_search_delete",
    "DROP TRIGGER transcripts_search_update",
    "DROP TRIGGER transcripts_search_insert",
    "DROP TABLE transcripts_fts",
]
_POSTGRES_UP = ["CREATE INDEX ix_transcripts_text_words ON transcripts USING gin (to_tsvector('simple', text))"]
_POSTGRES_DOWN = ["DROP INDEX ix_transcripts_text_words"]


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("source_ref", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("storage_key", sa.String(length=255), nullable=True),
        sa.Column("layout", sa.String(length=16), nullable=True),
        sa.Column("audio_format", sa.String(length=16), nullable=True),
        sa.Column("channels", sa.Integer(), nullable=True),
        sa.Column("sample_rate", sa.Integer(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call_logs.id"], name=op.f("fk_recordings_call_id_call_logs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("call_id", name=op.f("uq_recordings_call_id")),
    )
    op.create_table(
        "recording_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("recording_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seen_size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_jobs_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_jobs")),
    )
    op.create_index("ix_recording_jobs_kind_status_due", "recording_jobs", ["kind", "status", "due_at"])
    op.create_index(op.f("ix_recording_jobs_recording_id"), "recording_jobs", ["recording_id"])
    op.create_table(
        "transcripts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("recording_id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("search_key", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("audio_s", sa.Float(), nullable=False),
        sa.Column("took_s", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("original_text", sa.Text(), nullable=True),
        sa.Column("corrected_by", sa.String(length=32), nullable=True),
        sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call_logs.id"], name=op.f("fk_transcripts_call_id_call_logs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_transcripts_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcripts")),
        sa.UniqueConstraint("recording_id", name=op.f("uq_transcripts_recording_id")),
        sa.UniqueConstraint("search_key", name=op.f("uq_transcripts_search_key")),
    )
    op.create_index(op.f("ix_transcripts_call_id"), "transcripts", ["call_id"])
    op.create_table(
        "keyword_phrases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("phrase", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyword_phrases")),
        sa.UniqueConstraint("phrase", name=op.f("uq_keyword_phrases_phrase")),
    )
    op.create_table(
        "call_keyword_hits",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("transcript_id", sa.String(length=32), nullable=False),
        sa.Column("phrase", sa.String(length=200), nullable=False),
        sa.Column("speaker", sa.String(length=16), nullable=True),
        sa.Column("at_s", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call_logs.id"], name=op.f("fk_call_keyword_hits_call_id_call_logs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["transcript_id"],
            ["transcripts.id"],
            name=op.f("fk_call_keyword_hits_transcript_id_transcripts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_keyword_hits")),
    )
    op.create_index(op.f("ix_call_keyword_hits_call_id"), "call_keyword_hits", ["call_id"])
    op.create_index("ix_call_keyword_hits_created_at", "call_keyword_hits", ["created_at"])
    op.create_table(
        "recording_retention",
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_recording_retention")),
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=True),
        sa.Column("call_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("placed_by", sa.String(length=32), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call_logs.id"], name=op.f("fk_legal_holds_call_id_call_logs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_legal_holds_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index(op.f("ix_legal_holds_call_id"), "legal_holds", ["call_id"])
    op.create_index(op.f("ix_legal_holds_customer_id"), "legal_holds", ["customer_id"])
    for statement in _SQLITE_UP if op.get_bind().dialect.name == "sqlite" else _POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in _SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else _POSTGRES_DOWN:
        op.execute(statement)
    op.drop_index(op.f("ix_legal_holds_customer_id"), table_name="legal_holds")
    op.drop_index(op.f("ix_legal_holds_call_id"), table_name="legal_holds")
    op.drop_table("legal_holds")
    op.drop_table("recording_retention")
    op.drop_index("ix_call_keyword_hits_created_at", table_name="call_keyword_hits")
    op.drop_index(op.f("ix_call_keyword_hits_call_id"), table_name="call_keyword_hits")
    op.drop_table("call_keyword_hits")
    op.drop_table("keyword_phrases")
    op.drop_index(op.f("ix_transcripts_call_id"), table_name="transcripts")
    op.drop_table("transcripts")
    op.drop_index(op.f("ix_recording_jobs_recording_id"), table_name="recording_jobs")
    op.drop_index("ix_recording_jobs_kind_status_due", table_name="recording_jobs")
    op.drop_table("recording_jobs")
    op.drop_table("recordings")
