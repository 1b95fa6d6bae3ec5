"""Recordings: ingest and storage, Vosk transcription workers, transcript search."""
