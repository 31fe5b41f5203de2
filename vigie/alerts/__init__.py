"""Alerts raised by audit rules and the guard, delivered to people who can act on them."""
