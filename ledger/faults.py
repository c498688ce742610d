"""Fault injection for the crash tests: ``USEFIRST_FAULT=<point>`` makes the process die at
that point like a SIGKILL (no cleanup, no rollback message, no except clauses), so a test can
prove the work resumes and finishes exactly once. Unset in production."""

from __future__ import annotations

import logging
import os

from ledger.settings import Settings, get_settings

log = logging.getLogger("usefirst.faults")


def fault_point(name: str, settings: Settings | None = None) -> None:
    """Die here (exit status 137) when the ``fault`` setting names this point."""
    if (settings or get_settings()).fault == name:
        log.warning("fault injection: exiting at %s", name)
        os._exit(137)
