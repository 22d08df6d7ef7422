"""Route library logging (and uncaught errors) of a Snakemake script into its rule's log file."""

from __future__ import annotations

import logging
import sys


def to_file(path: str) -> None:
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
