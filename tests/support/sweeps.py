"""The file store's sweeps of expired records, which run in threads."""

from __future__ import annotations

import threading


def join_sweeps() -> None:
    """Wait for the sweeps running in this process to end."""
    for thread in threading.enumerate():
        if thread.name == "flask_pow cleanup":
            thread.join(timeout=60)
