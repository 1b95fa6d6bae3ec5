"""The recordings domain: recordings in storage, their ingest and transcription jobs, transcripts."""
