"""The CRM domain: models, services, events, settings. Imports nothing of its siblings."""
