"""Plain-words logging: every line says which role wrote it."""
from __future__ import annotations

import logging
import sys


def get_logger(role: str, level: int = logging.INFO) -> logging.Logger:
    logger = logging.getLogger(role)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s {role:>10s} | %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return logger
