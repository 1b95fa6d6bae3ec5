"""The SLA domain: business-hours calendars, policies, clocks per ticket, escalation and the scheduler."""
