"""Alembic migrations: the one schema history of the CRM."""
