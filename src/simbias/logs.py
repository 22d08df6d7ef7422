"""Route library logging (and uncaught errors) of a Snakemake script into its rule's log file."""

from __future__ import annotations

import logging
import signal
import sys


def to_file(path: str) -> None:
    """Log to the rule's log file; SIGTERM becomes a normal exit (status 143), so ``finally``
    blocks run and a write that was under way removes its temporary file."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.basicConfig(
        filename=path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)

    def excepthook(tp, val, tb):
        logging.getLogger("simbias").error("uncaught error", exc_info=(tp, val, tb))
        sys.__excepthook__(tp, val, tb)

    sys.excepthook = excepthook


def _exit_on_sigterm(signum, frame):
    logging.getLogger("simbias").warning("stopped by SIGTERM")
    sys.exit(128 + signum)
