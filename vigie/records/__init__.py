"""Patients, their documents and who may see them. The only app that talks to the vault."""
