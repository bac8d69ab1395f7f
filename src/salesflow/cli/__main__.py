"""`python -m salesflow.cli ...`: the same app as the `salesflow` console script."""

import sys

from salesflow.cli import app

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
