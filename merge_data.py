"""Old entry point kept for people who know it: `python merge_data.py` == `bunga merge`."""

import sys

from bunga.cli import app

if __name__ == "__main__":
    sys.argv[1:1] = ["merge"]
    app()
