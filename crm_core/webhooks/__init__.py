"""Outgoing webhooks: admins' subscriptions, and signed deliveries written before sending, retried, dead-lettered."""
