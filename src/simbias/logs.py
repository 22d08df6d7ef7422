"""Route library logging (and uncaught errors) of a Snakemake script into its rule's log file."""

from __future__ import annotations

import logging
import sys

from . import signals


def to_file(path: str) -> None:
    """Log to the rule's log file; SIGTERM becomes a normal exit (status 143) and SIGINT
    KeyboardInterrupt, so ``finally`` blocks run (:mod:`simbias.signals`)."""
    signals.install_stop_handlers()
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
