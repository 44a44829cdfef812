"""A preloading wrapper for CLIs that fork before importing the app (Dramatiq) or import it
only in a forked child (RQ):

    python preload.py MODULE SCRIPT [ARGS...]

imports MODULE, then runs the console script SCRIPT's entry point in this same process, with
ARGS as its command line. The CLI's own processes are then forked from one that already holds
what MODULE loaded at import, which is what a user who wants copy-on-write sharing does.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points


def main() -> None:
    module, script, *args = sys.argv[1:]
    importlib.import_module(module)
    (entry,) = entry_points(group="console_scripts", name=script)
    sys.argv = [script, *args]
    sys.exit(entry.load()())


if __name__ == "__main__":
    main()
