#!/usr/bin/env python
"""Django's manage.py, with the same preflight as the `vigie` command."""

from vigie.cli import main

if __name__ == "__main__":
    main()
