"""The server's background generator: fills in pending answers of open campaigns."""

from __future__ import annotations

import logging
import threading

from whetstone.feedback.campaigns import get_campaign
from whetstone.feedback.generation import ModelPool, campaigns_with_pending, generate_answers
from whetstone.store import Store

log = logging.getLogger("whetstone.feedback")


class GenerationWorker:
    """A daemon thread that generates pending answers; ``wake()`` after creating a campaign."""

    def __init__(self, store: Store, pool: ModelPool, idle_seconds: float = 5.0) -> None:
        self.store = store
        self.pool = pool
        self.idle_seconds = idle_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="whetstone-feedback-gen", daemon=True
        )
        self.busy_with: str | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def wake(self) -> None:
        """Look for pending answers now."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the chunk being generated (waits up to ``timeout`` seconds)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                for campaign_id in campaigns_with_pending(self.store):
                    if self._stop.is_set():
                        return
                    self.busy_with = campaign_id
                    campaign = get_campaign(self.store, campaign_id)
                    generate_answers(self.store, campaign, self.pool, should_stop=self._stop.is_set)
            except Exception:  # keep serving; the next round retries
                log.exception("background generation failed")
            finally:
                self.busy_with = None
            self._wake.wait(self.idle_seconds)
