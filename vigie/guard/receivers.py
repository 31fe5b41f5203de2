"""Signal receivers of the guard (the canary tripwire connects here)."""
