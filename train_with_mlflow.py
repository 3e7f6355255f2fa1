"""Old entry point kept for people who know it: `python train_with_mlflow.py` == `bunga pipeline`."""

import sys

from bunga.cli import app

if __name__ == "__main__":
    sys.argv[1:1] = ["pipeline"]
    app()
