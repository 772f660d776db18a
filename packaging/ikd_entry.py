"""Entry point of the frozen command line (`ikd` in the PyInstaller bundle)."""

import multiprocessing
import sys

if __name__ == "__main__":
    # First of all: in a frozen app, a child process started by multiprocessing re-runs this executable,
    # and freeze_support() turns it into that child instead of a second `ikd` run.
    multiprocessing.freeze_support()
    from ikd_gui.cli import main

    sys.exit(main())
