"""Helpers with no models: environment parsing, startup checks, file safety."""
