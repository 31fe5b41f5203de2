"""The physician portal and the server that runs it."""
