"""`python -m ikd_gui` starts the desktop app."""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from ikd_gui.gui.app import main

    raise SystemExit(main())
