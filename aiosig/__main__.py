"""``python -m aiosig``: the command line (see ``aiosig._cli``)."""

from ._cli import main

if __name__ == "__main__":
    main()
