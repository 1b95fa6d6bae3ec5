"""SMS: provider interface, Twilio provider, webhooks, opt-out, templates, campaigns."""
