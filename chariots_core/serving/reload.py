"""Hot reload: a serving app that follows its op store.

``Chariots(..., reload="latest", reload_interval=5)`` starts a :class:`Reloader`: a daemon
thread that reads the store's head token every ``reload_interval`` seconds, an O(1) read
whatever the history. When the head has changed (some process committed something), it
re-resolves each loaded pipeline with the reload strategy and deploys what changed (see
:mod:`chariots_core.serving.deployments`): new versions that pass the lineage check are
swapped in and recorded as ``reload`` deployments; a refused reload keeps the current models
serving and is recorded once per new refusal. A split pipeline is left as it is.

The thread holds the app weakly and is a daemon: it never keeps the interpreter alive, it
stops with ``app.close()``, and an app nobody references any more stops it too. Errors it
meets (a store that cannot be read for a while) are logged once per distinct error on the
``chariots.reload`` logger, and the next poll tries again.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..log import get_logger
from ..op_store.lineage import STRATEGIES

if TYPE_CHECKING:
    from .app import Chariots

__all__ = ["Reloader", "check_reload"]

_log = get_logger("reload")


def check_reload(strategy: object, interval: object) -> None:
    """Raise :class:`ConfigError` unless ``strategy`` and ``interval`` are valid reload settings."""
    if strategy is not None and strategy not in STRATEGIES:
        choices = ", ".join(map(repr, (None, *STRATEGIES)))
        raise ConfigError(f"'reload' must be one of {choices} (got {strategy!r})")
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not interval > 0:
        raise ConfigError(f"'reload_interval' must be a number of seconds > 0 (got {interval!r})")


class Reloader:
    """Polls ``app``'s op store head every ``interval`` seconds and reloads what changed.

    :param app: the app to keep up to date (held weakly).
    :param strategy: ``"latest"`` or ``"latest_compatible"``.
    :param interval: seconds between polls.
    """

    def __init__(self, app: Chariots, strategy: str, interval: float) -> None:
        check_reload(strategy, interval)
        self.strategy, self.interval = strategy, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_follow, args=(weakref.ref(app), self._stop, strategy, interval),
            name="chariots-reload", daemon=True,
        )  # fmt: skip
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the polling thread is alive."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop polling (waits for a reload in progress to finish)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


def _follow(app_ref: weakref.ref, stop: threading.Event, strategy: str, interval: float) -> None:
    seen = None  # the head after the last complete pass
    last_error = None
    while not stop.wait(interval):
        app = app_ref()
        if app is None:
            return
        try:
            head = app.op_store.head()
            if head != seen:
                for name in app._loaded_names():
                    if stop.is_set():
                        return
                    app._deployer.reload(name, strategy)
                seen = head
            last_error = None
        except Exception as exc:  # the thread must outlive a store that is unreadable for a while
            error = f"{type(exc).__name__}: {exc}"
            if error != last_error:
                _log.warning("hot reload failed, will try again in %s s: %s", interval, error)
                last_error = error
        finally:
            del app
