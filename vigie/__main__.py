"""`python -m vigie` behaves exactly like the `vigie` command."""

from vigie.cli import main

if __name__ == "__main__":
    main()
