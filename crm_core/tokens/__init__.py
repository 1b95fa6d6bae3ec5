"""The API tokens domain: scoped, hashed, revocable credentials for integrations."""
