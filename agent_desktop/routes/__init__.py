"""HTTP routes, one Quart blueprint per domain: a route parses, authorizes, calls the owning package, renders."""
