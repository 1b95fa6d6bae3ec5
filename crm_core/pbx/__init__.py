"""PBX users: which CRM user a PBX's user name or extension means, per named PBX."""
