"""Recordings kept in an S3-compatible store, chosen by the CRM_RECORDINGS_S3_* settings: tested against moto's S3
server, a separate process speaking the S3 REST API over HTTP (signed requests, checksums, 404s) as a real store
does. A recording goes in with its checksum, is fetched back for the recogniser and the player, and is deleted."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_core.settings import load_settings
from recordings.ingest import RecordingIngester
from recordings.store import LocalArchive, RecordingStore, S3Archive, archive_from_settings
from recordings.transcribe import Transcriber
from tests.recordings.helpers import ended_call, recording_of
from tests.recordings.speech import SENTENCES, bare_vosk_words, speak
from tests.recordings.test_transcription import transcript_of, upsampled, words_of

KEYS = {"aws_access_key_id": "testing-key", "aws_secret_access_key": "testing-secret"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in its own process on a free port; ready when it answers on its socket."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_PORT": str(port)},
    )
    try:
        deadline = time.monotonic() + 180  # a loaded machine starts Python slowly
        while True:
            assert server.poll() is None, "moto's server stopped"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto's server did not start listening"
                time.sleep(0.05)  # between looks at the socket (the condition waited for)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def bucket(s3_endpoint: str, tmp_path: Path) -> str:
    name = f"rec-{tmp_path.name.lower().replace('_', '-')[:40]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **KEYS).create_bucket(Bucket=name)
    return name


def raw_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **KEYS)


def archive_of(endpoint: str, bucket: str, tmp: Path) -> S3Archive:
    settings = load_settings(
        {
            "CRM_DATA_DIR": str(tmp),
            "CRM_RECORDINGS_S3_BUCKET": bucket,
            "CRM_RECORDINGS_S3_ENDPOINT_URL": endpoint,
            "CRM_RECORDINGS_S3_ACCESS_KEY_ID": KEYS["aws_access_key_id"],
            "CRM_RECORDINGS_S3_SECRET_ACCESS_KEY": KEYS["aws_secret_access_key"],
            "CRM_RECORDINGS_S3_PREFIX": "calls/",
        }
    )
    archive = archive_from_settings(settings)
    assert isinstance(archive, S3Archive)
    assert "testing-secret" not in repr(settings)  # a secret type: never printed
    return archive


def test_without_a_bucket_the_settings_choose_the_local_folder(tmp_path: Path) -> None:
    archive = archive_from_settings(load_settings({"CRM_DATA_DIR": str(tmp_path)}))
    assert isinstance(archive, LocalArchive) and archive.root == tmp_path / "recording-store"


def test_a_recording_is_put_with_its_checksum_fetched_back_and_deleted(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    archive = archive_of(s3_endpoint, bucket, tmp_path)
    source = speak(SENTENCES[0], tmp_path / "call.wav", rate=8000)
    body = source.read_bytes()

    stored = archive.put(source, "2026/12/03/abc.wav")

    assert (stored.key, stored.size_bytes, stored.sha256) == (
        "2026/12/03/abc.wav",
        len(body),
        hashlib.sha256(body).hexdigest(),
    )
    kept = raw_client(s3_endpoint).get_object(Bucket=bucket, Key="calls/2026/12/03/abc.wav")
    assert kept["Body"].read() == body and kept["ContentType"] == "audio/wav"
    local = archive.local_path("2026/12/03/abc.wav")
    assert local is not None and local.read_bytes() == body and local.is_relative_to(tmp_path / "recording-store")
    assert archive.local_path("2026/12/03/missing.wav") is None  # the store's 404: not there
    with pytest.raises(ValueError):
        archive.put(source, "../escape.wav")

    archive.delete("2026/12/03/abc.wav")
    assert archive.local_path("2026/12/03/abc.wav") is None
    listed = raw_client(s3_endpoint).list_objects_v2(Bucket=bucket)
    assert listed.get("KeyCount", 0) == 0


def test_wrong_credentials_are_refused_by_the_store(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    source = speak(SENTENCES[1], tmp_path / "c.wav", rate=8000)
    archive = S3Archive(
        bucket=f"{bucket}-absent",
        cache=tmp_path / "cache",
        endpoint_url=s3_endpoint,
        **{"access_key_id": "k", "secret_access_key": "s"},
    )
    with pytest.raises(ClientError):
        archive.put(source, "x.wav")  # no such bucket: an error the ingest turns into a retried reason


async def test_ingest_and_transcription_through_the_s3_store(
    s3_endpoint: str,
    bucket: str,
    tmp_path: Path,
    sqlite_sessions: async_sessionmaker[AsyncSession],
    vosk_pool: ProcessPoolExecutor,
    model_path: Path,
) -> None:
    sessions = sqlite_sessions
    spool = tmp_path / "spool"
    spool.mkdir()
    phone = speak(SENTENCES[1], spool / "phone.wav", rate=8000)
    await ended_call(sessions, "s3.1", "phone.wav")
    archive = archive_of(s3_endpoint, bucket, tmp_path)
    ingest = RecordingIngester(sessions, spool=RecordingStore(spool), archive=archive, settle_s=0)
    while await ingest.run_once() is not None:
        pass
    recording, _ = await recording_of(sessions, "s3.1")
    assert recording.status == "stored" and recording.storage_key is not None
    kept = raw_client(s3_endpoint).get_object(Bucket=bucket, Key=f"calls/{recording.storage_key}")["Body"].read()
    assert kept == phone.read_bytes() and recording.sha256 == hashlib.sha256(kept).hexdigest()

    fresh = archive_of(s3_endpoint, bucket, tmp_path / "worker")  # another host: nothing cached yet
    assert await Transcriber(sessions, archive=fresh, model_path=model_path, pool=vosk_pool).run_pending() == 1
    transcript = await transcript_of(sessions, "s3.1")
    assert words_of(transcript) == bare_vosk_words(vosk_pool, upsampled(phone, tmp_path / "phone16.wav"))
