"""Talking to PBXes: AMI connection, event normalisation, call/agent/queue tracker, commands, demo PBX."""
