"""Notifications: render a message for an event (drain, reboot, uncordon, halt, block) and deliver
it to apprise URLs in the background.

Rule: notifying never delays or breaks the reboot cycle. `send` only renders the message and puts it
on each URL's bounded queue (when one is full, its oldest message is dropped and logged); each URL
has its own background task, started with its first message, that delivers its queue in order with a
per-message timeout, so a hung endpoint never holds back another one. A slow, hung or dead endpoint
costs a log line (`rebootd.notify.failed`), never the caller's time. `close(within=...)` flushes
what it can inside its bound and abandons the rest (logged as undelivered).

Secrets: a notification URL carries credentials (tokens in the path, passwords in the userinfo),
so it is kept as `SecretStr` and logs name a URL only by its position and scheme (`slack`,
`json`, ...). apprise's own `logging` output names hosts and, at debug level, whole request
URLs: this module raises the `apprise` logger's level above CRITICAL so that nothing of apprise's
reaches the process' stderr (rebootd does not route stdlib logging anywhere else).

apprise is heavy (its import and its first URL parse, which loads every plugin, are slow and
memory-hungry: figures in bench/README.md). It is imported lazily, on the first delivery, inside the
delivery thread, so neither start-up nor the event loop pays for it, and a daemon without
notification URLs never loads it. apprise's delivery is synchronous (requests), so each delivery
runs in a small thread pool owned by the notifier (not the loop's default executor, which aiohttp's
DNS lookups share): a hung call can only occupy this pool. The plugin's socket timeouts are clamped
to twice the per-message timeout, so an abandoned call ends by itself.

Templates use `{node}` and `{reason}`; kured's `%s` means the node. A placeholder the caller did
not supply stays as written rather than failing the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, cast
from urllib.parse import urlsplit

from pydantic import SecretStr
from structlog.typing import FilteringBoundLogger

from rebootd.settings import Settings

KINDS: Final = ("drain", "reboot", "uncordon", "halt", "block")
DEFAULT_TIMEOUT = 10.0
DEFAULT_QUEUE_SIZE = 100
# apprise's NotifyType values, by event kind (they set the colour/icon in chat services).
_NOTIFY_TYPES: Final = {
    "drain": "info",
    "reboot": "info",
    "uncordon": "success",
    "halt": "failure",
    "block": "warning",
}


def templates_from_settings(settings: Settings) -> dict[str, str]:
    """The message templates of `settings`, by event kind."""
    return {
        "drain": settings.message_template_drain,
        "reboot": settings.message_template_reboot,
        "uncordon": settings.message_template_uncordon,
        "halt": settings.message_template_halt,
        "block": settings.message_template_block,
    }


class _KeepMissing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: str, values: Mapping[str, str]) -> str:
    """`template` with `{node}`/`{reason}` (and kured's `%s` = node) filled from `values`."""
    text = template.replace("%s", "{node}")
    try:
        return text.format_map(_KeepMissing(values))
    except (ValueError, IndexError, AttributeError):
        # A template the settings validator let through but format_map cannot use (e.g. `{0}`,
        # `{node.x}`): send it as written rather than lose the event.
        return template


def load_apprise() -> Any:
    """Import apprise and load its plugins (slow: call it off the event loop); returns the module.

    The plugins are loaded here, explicitly, rather than by the first URL parse: one of them
    imports the standard library's deprecated `imghdr` on Python 3.11/3.12, whose
    DeprecationWarning is harmless here and would be an error under `-W error`; it alone is
    silenced, while the plugins load. apprise's `logging` output is switched off (see the module
    docstring).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)
        import apprise
        from apprise.manager_plugins import NotificationManager

        cast(Any, NotificationManager)().load_modules()  # untyped in apprise
    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)
    return apprise


def url_scheme(url: SecretStr) -> str:
    """The only part of a notification URL that may be logged."""
    try:
        return urlsplit(url.get_secret_value()).scheme.lower() or "?"
    except ValueError:
        return "?"


@dataclass(frozen=True)
class Message:
    kind: str
    body: str
    notify_type: str
    queued_at: float


class _DeliveryFailed(Exception):
    """A delivery did not succeed; `reason` is safe to log (never URL text)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Target:
    """One notification URL and its apprise plugin (built on first use, in a delivery thread)."""

    index: int
    url: SecretStr
    scheme: str
    timeout: float
    _plugin: Any = field(default=None, repr=False)
    _invalid: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _load(self) -> Any:
        with self._lock:
            if self._plugin is None and not self._invalid:
                apprise = load_apprise()
                plugin = apprise.Apprise.instantiate(self.url.get_secret_value())
                if plugin is None:
                    self._invalid = True
                else:
                    # Bound the thread of a hung call that the notifier abandoned at `timeout`:
                    # requests gives up by itself soon after (twice the timeout, so the notifier's
                    # own timeout fires first and is what gets reported).
                    limit = 2 * self.timeout
                    plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout), limit)
                    plugin.socket_read_timeout = min(float(plugin.socket_read_timeout), limit)
                    self._plugin = plugin
            return self._plugin

    def deliver(self, body: str, notify_type: str) -> None:
        """Blocking: runs in the notifier's thread pool."""
        plugin = self._load()
        if plugin is None:
            raise _DeliveryFailed("invalid_url")
        try:
            ok = plugin.notify(body=body, title="", notify_type=notify_type)
        except Exception as exc:  # noqa: BLE001 - a plugin bug must not kill the delivery task
            raise _DeliveryFailed(f"error:{type(exc).__name__}") from None
        if not ok:
            raise _DeliveryFailed("rejected")


class Notifier:
    """Renders and delivers notifications in the background (see the module docstring)."""

    def __init__(
        self,
        *,
        urls: Sequence[SecretStr],
        templates: Mapping[str, str],
        log: FilteringBoundLogger,
        timeout: float = DEFAULT_TIMEOUT,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"notification timeout must be positive, got {timeout}")
        if queue_size < 1:
            raise ValueError(f"notification queue size must be at least 1, got {queue_size}")
        unknown = set(templates) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown notification kinds {sorted(unknown)}; expected {list(KINDS)}")
        self._targets = tuple(
            _Target(index=i, url=url, scheme=url_scheme(url), timeout=timeout) for i, url in enumerate(urls)
        )
        self._templates = dict(templates)
        self._log = log
        self._timeout = timeout
        # One queue and one worker per URL: a hung endpoint never holds back another one.
        self._queues: list[asyncio.Queue[Message]] = [
            asyncio.Queue(maxsize=queue_size) for _ in self._targets
        ]
        self._executor: ThreadPoolExecutor | None = None
        self._workers: list[asyncio.Task[None] | None] = [None for _ in self._targets]
        self._closed = False
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return bool(self._targets)

    def schemes(self) -> list[str]:
        return [t.scheme for t in self._targets]

    async def send(self, kind: str, values: Mapping[str, str]) -> None:
        """Queue the `kind` message rendered with `values`; returns at once (never waits)."""
        if kind not in KINDS:
            raise ValueError(f"unknown notification kind {kind!r}; expected one of {list(KINDS)}")
        if not self._targets or kind not in self._templates:
            return
        if self._closed:
            self.dropped += 1
            self._log.warning("rebootd.notify.dropped", kind=kind, why="closed")
            return
        message = Message(
            kind=kind,
            body=render(self._templates[kind], values),
            notify_type=_NOTIFY_TYPES[kind],
            queued_at=time.monotonic(),
        )
        for index, queue in enumerate(self._queues):
            if queue.full():
                oldest = queue.get_nowait()
                queue.task_done()
                self.dropped += 1
                self._log.warning("rebootd.notify.dropped", kind=oldest.kind, why="queue_full", target=index)
            queue.put_nowait(message)
            self._ensure_worker(index)

    def _ensure_worker(self, index: int) -> None:
        worker = self._workers[index]
        if worker is None or worker.done():
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=min(8, len(self._targets) + 1), thread_name_prefix="rebootd-notify"
                )
            self._workers[index] = asyncio.create_task(
                self._run(self._executor, index), name=f"rebootd.notify.deliver-{index}"
            )

    async def _run(self, executor: ThreadPoolExecutor, index: int) -> None:
        queue, target = self._queues[index], self._targets[index]
        while True:
            message = await queue.get()
            try:
                await self._deliver(executor, target, message)
            finally:
                queue.task_done()

    def _live_workers(self) -> list[asyncio.Task[None]]:
        return [w for w in self._workers if w is not None and not w.done()]

    async def _join(self, *, within: float) -> None:
        if not self._live_workers():
            return
        with contextlib.suppress(TimeoutError):  # join() returns at once when nothing is pending
            await asyncio.wait_for(
                asyncio.gather(*(q.join() for q in self._queues)), timeout=max(0.0, within)
            )

    async def _deliver(self, executor: ThreadPoolExecutor, target: _Target, message: Message) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            future = loop.run_in_executor(executor, target.deliver, message.body, message.notify_type)
            await asyncio.wait_for(future, timeout=self._timeout)
        except TimeoutError:
            reason = "timeout"
        except _DeliveryFailed as exc:
            reason = exc.reason
        except Exception as exc:  # noqa: BLE001 - e.g. apprise missing; logged, the task lives on
            reason = f"error:{type(exc).__name__}"
        else:
            self.delivered += 1
            self._log.debug(
                "rebootd.notify.sent",
                kind=message.kind,
                target=target.index,
                scheme=target.scheme,
                seconds=round(loop.time() - started, 3),
            )
            return
        self.failed += 1
        self._log.warning(
            "rebootd.notify.failed",
            kind=message.kind,
            target=target.index,
            scheme=target.scheme,
            reason=reason,
            seconds=round(loop.time() - started, 3),
        )

    async def flush(self, *, within: float) -> None:
        """Wait at most `within` seconds for the queued messages to be delivered (the cycle does
        this just before a reboot, which ends the process, so "Rebooting node X" gets out)."""
        await self._join(within=within)

    async def close(self, *, within: float) -> None:
        """Stop accepting messages and deliver the queued ones for at most `within` seconds."""
        self._closed = True
        await self._join(within=within)
        workers = self._live_workers()
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.wait(workers)  # does not raise, so a cancelled caller stays cancelled
        undelivered = 0
        for queue in self._queues:
            undelivered += queue.qsize()
            while not queue.empty():
                queue.get_nowait()
                queue.task_done()
        if undelivered:
            self.dropped += undelivered
            self._log.warning("rebootd.notify.undelivered", count=undelivered, within=within)
        executor, self._executor = self._executor, None
        if executor is not None:
            # Threads still inside a hung call end by their (clamped) socket timeout; do not wait.
            executor.shutdown(wait=False, cancel_futures=True)
