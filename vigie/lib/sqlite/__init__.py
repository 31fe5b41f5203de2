"""Django's SQLite backend, with a writer queue that does not sleep for 100 ms at a time."""
