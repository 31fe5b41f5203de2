"""Vigie: a portal where physicians read their patients' documents, safe on its own."""

__version__ = "0.1.0"
