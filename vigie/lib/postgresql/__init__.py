"""Django's PostgreSQL backend, without the health check's round trip on a connection
that served the previous request cleanly a moment ago (see base.py)."""
