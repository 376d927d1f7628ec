"""`wonderzoom`: the entry point. The command line lives in the `cli` package, one module
per command; see `cli/__init__.py`."""

import sys

from cli import main

if __name__ == "__main__":
    sys.exit(main())
