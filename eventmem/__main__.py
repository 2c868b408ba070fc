"""``python -m eventmem``: the ``eventmem`` command."""

import sys

from eventmem.cli import main

if __name__ == "__main__":
    sys.exit(main())
