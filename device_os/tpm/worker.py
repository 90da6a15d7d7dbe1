"""The TPM worker: one thread that runs every TPM call, in submission order (one ESAPI per process)."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Worker:
    """One thread that runs every TPM call, in submission order."""

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tpm")
        self._thread_id: int | None = None
        self._executor.submit(self._remember_thread).result()

    def _remember_thread(self) -> None:
        self._thread_id = threading.get_ident()

    def run(self, fn: Callable[[], T]) -> T:
        if threading.get_ident() == self._thread_id:
            return fn()
        return self._executor.submit(fn).result()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
