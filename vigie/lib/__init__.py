"""Helpers with no models and no app of their own: typed environment readers, security
headers, CSRF under `no-referrer`, trusted proxies, the SQLite backend, test certificates."""
