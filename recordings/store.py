"""Where call recordings come from (the folder the PBX's recordings reach: a mount of Asterisk's monitor spool, or
what a sync copies, looked up by the file name the PBX reported and never outside it) and where they are kept."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from crm_core.settings import Settings

_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
MEDIA_TYPES = {
    ".wav": "audio/wav",
    ".gsm": "audio/x-gsm",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
}


class RecordingStore:
    """The PBX's recordings folder (MIXMONITOR_FILENAME names a file on the PBX host; only its name counts here)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, recording_ref: str) -> Path | None:
        """The file of a recording as the PBX named it (an absolute path on the PBX host), or None when it is not
        here (yet) or the name is not a plain audio file name: only the name counts, so no path leads elsewhere."""
        name = recording_ref.replace("\\", "/").rsplit("/", 1)[-1]
        if not _FILE_NAME.match(name) or Path(name).suffix.lower() not in MEDIA_TYPES:
            return None
        path = self.root / name
        return path if path.is_file() else None

    def companions(self, recording_ref: str) -> tuple[Path, Path] | None:
        """The two directions of a call recorded apart (MixMonitor's r() and t() options), named after the mixed
        file: <name>-r.wav (heard from the caller's channel: the customer) and <name>-t.wav (sent to it: the agent)."""
        name = recording_ref.replace("\\", "/").rsplit("/", 1)[-1]
        stem, dot, suffix = name.rpartition(".")
        if not dot:
            return None
        received = self.path_of(f"{stem}-r.{suffix}")
        sent = self.path_of(f"{stem}-t.{suffix}")
        return (received, sent) if received is not None and sent is not None else None

    @staticmethod
    def media_type(path: Path) -> str:
        return MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


class RecordingArchive(Protocol):
    """Where ingested recordings are kept: a local folder by default; an S3-compatible store implements the same."""

    def put(self, source: Path, key: str) -> StoredFile:
        """Copy `source` in under `key` (atomically: whole or not at all); its size and sha256 as copied."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A local file of `key` to read (for the player and the recogniser), or None when it is not there."""
        ...

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str
    size_bytes: int
    sha256: str


_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,250}$")
_CHUNK = 1024 * 1024


class LocalArchive:
    """Recordings kept in a folder of this host, under keys like 2026/12/03/<recording id>.wav."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

    def put(self, source: Path, key: str) -> StoredFile:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        digest = hashlib.sha256()
        size = 0
        try:
            with source.open("rb") as src, partial.open("wb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return StoredFile(key, size, digest.hexdigest())

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Archive:
    """Recordings kept in a bucket of any S3-compatible store (AWS S3, MinIO, Ceph…), over the S3 REST API (boto3).

    put: the file's sha256 is worked out while it is read, sent with the object (x-amz-checksum-sha256, so the
    store refuses a body damaged on the way) and checked against what the store then reports; a PUT is whole or
    nothing. local_path: the player and the recogniser read local files, so an object is fetched once into a cache
    folder (atomically, by rename) and read from there."""

    def __init__(
        self,
        *,
        bucket: str,
        cache: Path,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.cache = cache
        self.prefix = prefix
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
            )
        self.client = client

    def _object(self, key: str) -> str:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise ValueError(f"not a storage key: {key!r}")
        return f"{self.prefix}{key}"

    def put(self, source: Path, key: str) -> StoredFile:
        name = self._object(key)
        digest = hashlib.sha256()
        size = 0
        with source.open("rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        checksum = base64.b64encode(digest.digest()).decode()
        with source.open("rb") as body:
            self.client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=body,
                ContentLength=size,
                ContentType=RecordingStore.media_type(source),
                ChecksumSHA256=checksum,
            )
        head = self.client.head_object(Bucket=self.bucket, Key=name)
        if int(head["ContentLength"]) != size:
            self.client.delete_object(Bucket=self.bucket, Key=name)
            raise OSError(f"the store kept {head['ContentLength']} bytes of {key}, not {size}")
        cached = self._cached(key)
        cached.unlink(missing_ok=True)  # a key written again is fetched again
        return StoredFile(key, size, digest.hexdigest())

    def _cached(self, key: str) -> Path:
        self._object(key)
        return self.cache / key

    def local_path(self, key: str) -> Path | None:
        from botocore.exceptions import ClientError

        target = self._cached(key)
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            with partial.open("wb") as out:
                self.client.download_fileobj(self.bucket, self._object(key), out)
            partial.replace(target)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        finally:
            partial.unlink(missing_ok=True)
        return target

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))
        self._cached(key).unlink(missing_ok=True)


def archive_from_settings(settings: Settings) -> RecordingArchive:
    """The store the settings name: a bucket (CRM_RECORDINGS_S3_*) or the local folder."""
    if settings.recordings_s3_bucket:
        secret = settings.recordings_s3_secret_access_key
        return S3Archive(
            bucket=settings.recordings_s3_bucket,
            cache=settings.recordings_store_folder / "s3-cache",
            prefix=settings.recordings_s3_prefix,
            endpoint_url=settings.recordings_s3_endpoint_url,
            region=settings.recordings_s3_region,
            access_key_id=settings.recordings_s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )
    return LocalArchive(settings.recordings_store_folder)
