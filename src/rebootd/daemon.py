"""Wires the daemon together and supervises its tasks.

Rule: every long-running piece is a named task under the `Supervisor`. SIGTERM/SIGINT set the
stop event and the daemon stops cleanly within `STOP_TIMEOUT` seconds, exit 0. A task that
crashes (or returns when it should run forever) is logged, `/healthz` turns 503 naming it, the
other tasks are cancelled and the process exits 1 so the kubelet restarts it: never half-alive.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from rebootd.backoff import Backoff
from rebootd.blockers import Blocker, NodeBudget, PdbPreflight, PodBlocker, prometheus_blockers
from rebootd.clock import Clock, SystemClock
from rebootd.cycle import TRANSIENT, Cycle, CycleOptions, Notify, RecoveryGate
from rebootd.drain import DrainOptions
from rebootd.kube import Kube
from rebootd.lock import LeaseLock, LockConfig
from rebootd.lockstate import Limits
from rebootd.logs import get_logger
from rebootd.metrics import Metrics
from rebootd.notify import Notifier, templates_from_settings
from rebootd.reboot import CommandRebooter, Rebooter, SignalRebooter, compose_argv
from rebootd.recovery import WorkloadRecovery
from rebootd.sentinel import Checker, SentinelError, make_checker
from rebootd.server import HealthReport, MetricsServer, Probes, build_app
from rebootd.settings import Settings
from rebootd.waits import sleep_or_stop

STOP_TIMEOUT = 5.0
# connecting while the API is away: 0.5 s doubling to 30 s, each spread over its upper half so that
# the daemons of a cluster whose apiserver restarted do not come back in step
SETUP_BACKOFF = Backoff(base=0.5, cap=30.0, jitter="scaled", low=0.5, high=1.0)
NOTIFY_FLUSH_BEFORE_REBOOT = 1.0  # the longest a reboot waits for its own notifications


class Supervisor:
    """Named tasks that must all stay alive; the first failure stops everything."""

    def __init__(self, *, linger: float = 1.0) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failed: dict[str, str] = {}
        self._stopping = False
        self._linger = linger
        self._log = get_logger()

    def spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        return task

    def health(self) -> HealthReport:
        for name, task in self._tasks.items():
            if task.done() and not self._stopping and name not in self._failed:
                self._failed[name] = self._describe(task)
        ok = not self._failed
        detail: dict[str, Any] = {"tasks": sorted(self._tasks)}
        if not ok:
            detail["failed"] = dict(self._failed)
        return ok, detail

    @staticmethod
    def _describe(task: asyncio.Task[Any]) -> str:
        if task.cancelled():
            return "cancelled"
        exc = task.exception()
        return "returned unexpectedly" if exc is None else f"{type(exc).__name__}: {exc}"

    async def run_until(self, stop: asyncio.Event) -> int:
        """Wait for `stop` or for any task to end; 0 on a requested stop, 1 on a task failure."""
        stop_waiter = asyncio.create_task(stop.wait(), name="stop-signal")
        try:
            pending = {stop_waiter, *self._tasks.values()}
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_waiter.cancel()
        crashed = [t for t in done if t is not stop_waiter and (t.cancelled() or t.exception() is not None)]
        if not crashed and stop.is_set():
            return 0
        crashed = crashed or [t for t in done if t is not stop_waiter]
        for task in crashed:
            reason = self._describe(task)
            self._failed[task.get_name()] = reason
            exc = None if task.cancelled() else task.exception()
            self._log.error("rebootd.daemon.task_failed", task=task.get_name(), reason=reason, exc_info=exc)
        # Keep answering 503 briefly so probes and operators see which task failed.
        await sleep_or_stop(seconds=self._linger, stop=stop)
        return 1

    async def shutdown(self, *, within: float = STOP_TIMEOUT) -> None:
        self._stopping = True
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks.values(), timeout=within)


@dataclass
class SentinelState:
    """What the sentinel last said; the cycle waits on `changed`."""

    required: bool = False
    checked: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    first_check: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, required: bool) -> None:
        if required != self.required or not self.checked:
            self.required = required
            self.checked = True
            self.changed.set()
            self.first_check.set()


async def watch_sentinel(
    *,
    checker: Checker,
    state: SentinelState,
    metrics: Metrics,
    node: str,
    period: float,
    stop: asyncio.Event,
) -> None:
    """Check the sentinel every `period` until `stop`; failures are logged and counted, never fatal."""
    log = get_logger(node=node)
    while not stop.is_set():
        try:
            required = await checker.reboot_required()
        except SentinelError as exc:
            metrics.sentinel_errors.labels(node=node).inc()
            log.warning("rebootd.sentinel.check_failed", error=str(exc))
        else:
            if required != state.required or not state.checked:
                log.info("rebootd.sentinel.changed", reboot_required=required)
            state.publish(required)
            metrics.reboot_required.labels(node=node).set(1 if required else 0)
        await sleep_or_stop(seconds=period, stop=stop)


class Daemon:
    """One node's rebootd: sentinel, metrics/health server, and the reboot cycle."""

    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        checker: Checker | None = None,
        extra_tasks: dict[str, Callable[[asyncio.Event], Coroutine[Any, Any, None]]] | None = None,
        linger: float = 1.0,
        kube: Kube | None = None,
        rebooter: Rebooter | None = None,
        blockers: Sequence[Blocker] | None = None,
        recovery: RecoveryGate | None = None,
        notify: Notify | None = None,
        time_scale: float = 1.0,
    ) -> None:
        self.settings = settings
        self.clock = clock if clock is not None else SystemClock()
        self.metrics = metrics if metrics is not None else Metrics.create(kured_compat=settings.kured_compat)
        self.checker = (
            checker
            if checker is not None
            else make_checker(
                sentinel_file=settings.reboot_sentinel,
                # kured runs the sentinel command on the host too: it asks the host's package manager.
                sentinel_command=compose_argv(
                    argv=settings.reboot_sentinel_command, nsenter=settings.reboot_nsenter
                )
                if settings.reboot_sentinel_command
                else None,
                timeout=settings.reboot_sentinel_command_timeout,
            )
        )
        self.sentinel = SentinelState()
        self.supervisor = Supervisor(linger=linger)
        self._extra_tasks = dict(extra_tasks or {})
        self._kube = kube
        self._owns_kube = kube is None
        self._rebooter = rebooter
        self._blockers = blockers
        self._recovery = recovery
        self._notify = notify
        self._notifier: Notifier | None = None
        # Internal intervals that are not operator settings (drain poll 1 s and 429 retry 5 s as
        # kubectl, hand-off grace 2 s) scale with `time_scale`; the simulator runs them faster.
        self._time_scale = time_scale
        self._http: aiohttp.ClientSession | None = None
        self.cycle: Cycle | None = None
        self._ready = False
        self.server: MetricsServer | None = None
        self.started = asyncio.Event()
        self._log = get_logger(node=settings.node_id)

    def _readiness(self) -> HealthReport:
        ok, detail = self.supervisor.health()
        ready = ok and self._ready and self.sentinel.checked
        return ready, {**detail, "sentinel_checked": self.sentinel.checked, "lock_read": self._ready}

    async def run(self, *, stop: asyncio.Event) -> int:
        """Run until `stop` is set (exit code 0) or a supervised task fails (exit code 1)."""
        s = self.settings
        app = build_app(
            registry=self.metrics.registry,
            probes=Probes(health=self.supervisor.health, ready=self._readiness),
        )
        self.server = MetricsServer(app=app, host=s.metrics_host, port=s.metrics_port)
        await self.server.start()
        self._log.info("rebootd.daemon.started", metrics_port=self.server.port, period=s.period)
        if not s.pod_uid:
            self._log.warning(
                "rebootd.daemon.no_pod_uid",
                detail="REBOOTD_POD_UID is not set (the DaemonSet sets it from metadata.uid): a restarted "
                "container cannot resume its own slot grant before the grant goes stale",
            )
        try:
            self.supervisor.spawn(
                "sentinel",
                watch_sentinel(
                    checker=self.checker,
                    state=self.sentinel,
                    metrics=self.metrics,
                    node=s.node_id,
                    period=s.period,
                    stop=stop,
                ),
            )
            self.supervisor.spawn("cycle", self._run_cycle(stop))
            for name, factory in self._extra_tasks.items():
                self.supervisor.spawn(name, factory(stop))
            self.started.set()
            code = await self.supervisor.run_until(stop)
            if code == 0 and self.cycle is not None:  # a requested stop, not a crash or a kill
                await self.supervisor.shutdown(within=STOP_TIMEOUT - 3)
                await self.cycle.take_down_signs(within=1.5)
        finally:
            await asyncio.shield(self._shutdown())
        self._log.info("rebootd.daemon.stopped", exit_code=code)
        return code

    async def _shutdown(self) -> None:
        await self.supervisor.shutdown(within=STOP_TIMEOUT - 1)
        if self._notifier is not None:
            await self._notifier.close(within=1.5)
        if self._owns_kube and self._kube is not None:
            await self._kube.close()
        if self._http is not None:
            await self._http.close()
        if self.server is not None:
            await self.server.stop()

    def _default_blockers(self, kube: Kube, budget: NodeBudget | None) -> list[Blocker]:
        s = self.settings
        blockers: list[Blocker] = []
        if budget is not None:
            blockers.append(budget)
        if s.blocking_pod_selector:
            blockers.append(
                PodBlocker(
                    kube=kube, node=s.node_id, selectors=s.blocking_pod_selector, scope=s.blocking_pod_scope
                )
            )
        if s.pdb_preflight:
            blockers.append(
                PdbPreflight(kube=kube, node=s.node_id, pod_selector=s.drain_pod_selector, clock=self.clock)
            )
        if s.prometheus_url:
            self._http = aiohttp.ClientSession()
            password = s.prometheus_password.get_secret_value() if s.prometheus_password else None
            token = s.prometheus_bearer_token.get_secret_value() if s.prometheus_bearer_token else None
            blockers += prometheus_blockers(
                session=self._http,
                url=s.prometheus_url,
                alerts_source=s.prometheus_alerts_source,
                query=s.prometheus_query,
                filter_regexp=s.alert_filter_regexp,
                filter_match_only=s.alert_filter_match_only,
                firing_only=s.alert_firing_only,
                bearer_token=token,
                basic_auth=(s.prometheus_username, password) if password is not None else None,
                ca_file=s.prometheus_ca_file,
            )
        return blockers

    def _default_notify(self) -> Notify | None:
        if not self.settings.notify_url:
            return None
        self._notifier = Notifier(
            urls=self.settings.notify_url,
            templates=templates_from_settings(self.settings),
            log=get_logger(node=self.settings.node_id, component="notify"),
        )
        return self._notifier.send

    async def _flush_notifications(self) -> None:
        if self._notifier is not None:
            await self._notifier.flush(within=NOTIFY_FLUSH_BEFORE_REBOOT)

    def _default_rebooter(self) -> Rebooter:
        s = self.settings
        if s.reboot_method == "signal":
            return SignalRebooter(signal=s.reboot_signal)
        return CommandRebooter(argv=s.reboot_command, nsenter=s.reboot_nsenter)

    async def _setup_cycle(self, stop: asyncio.Event) -> Cycle | None:
        """Connect, learn our zone and read the Lease; retried with backoff while the API is away."""
        s = self.settings
        if self._kube is None:
            # the node in the User-Agent: every daemon holds the same ServiceAccount, and an audit
            # log tells them apart by it
            self._kube = await Kube.connect(
                kubeconfig=s.kubeconfig, metrics=self.metrics, user_agent=f"rebootd@{s.node_id}"
            )
        rng = random.Random()  # noqa: S311 - jitter, not cryptography
        attempt = 0
        while not stop.is_set():
            try:
                node = await self._kube.get_node(name=s.node_id)
                break
            except TRANSIENT as exc:
                attempt += 1
                delay = SETUP_BACKOFF.delay(attempt=attempt, rng=rng)
                self._log.warning(
                    "rebootd.daemon.api_unavailable", error=str(exc)[:300], retry_in=round(delay, 3)
                )
                await sleep_or_stop(seconds=delay, stop=stop)
        else:
            return None
        zone = (node["metadata"].get("labels") or {}).get(s.zone_label, "")
        budget = None
        if s.max_unavailable_nodes is not None or s.max_unavailable_nodes_per_zone is not None:
            budget = NodeBudget(
                kube=self._kube,
                node=s.node_id,
                zone_label=s.zone_label,
                max_unavailable=s.max_unavailable_nodes,
                max_unavailable_per_zone=s.max_unavailable_nodes_per_zone,
            )
        lock = LeaseLock(
            kube=self._kube,
            config=LockConfig(
                namespace=s.lock_namespace,
                name=s.lock_name,
                node=s.node_id,
                zone=zone,
                limits=Limits(
                    # A share ("10%") is resolved below, against the node count, before any use.
                    concurrency=s.concurrency if isinstance(s.concurrency, int) else 1,
                    zone_concurrency=s.zone_concurrency if isinstance(s.zone_concurrency, int) else 1,
                    max_unavailable=s.max_unavailable_nodes,
                    max_unavailable_per_zone=s.max_unavailable_nodes_per_zone,
                ),
                shares=(s.concurrency, s.zone_concurrency)
                if isinstance(s.concurrency, str) or isinstance(s.zone_concurrency, str)
                else None,
                zone_label=s.zone_label,
                ttl=s.lock_ttl,
                renew_interval=s.lock_renew_interval,
                boot_allowance=s.boot_timeout,
                grace=2.0 * self._time_scale,
                pod=s.pod_uid,
            ),
            clock=self.clock,
        )
        await lock.resolve_limits()  # a share of the nodes ("10%"): against the node count now
        options = CycleOptions(
            node=s.node_id,
            window=s.window,
            period=s.period,
            renew_interval=s.lock_renew_interval,
            boot_timeout=s.boot_timeout,
            recovery_timeout=s.recovery_timeout,
            release_delay=s.lock_release_delay,
            drain=DrainOptions(
                grace_period=s.drain_grace_period,
                timeout=s.drain_timeout,
                skip_wait_for_delete_timeout=s.skip_wait_for_delete_timeout,
                pod_selector=s.drain_pod_selector,
                poll=1.0 * self._time_scale,
                retry_429=5.0 * self._time_scale,
            ),
            drain_delay=s.drain_delay,
            reboot_delay=s.reboot_delay,
            force_reboot=s.force_reboot,
            min_reboot_interval=s.min_reboot_interval,
            prefer_no_schedule_taint=s.prefer_no_schedule_taint,
            annotate_nodes=s.annotate_nodes,
            kured_annotations=s.annotate_nodes and s.kured_compat,
            pre_reboot_labels=_label_map(s.pre_reboot_node_labels),
            post_reboot_labels=_label_map(s.post_reboot_node_labels),
            boot_id_file=s.boot_id_file,
        )
        return Cycle(
            kube=self._kube,
            lock=lock,
            options=options,
            sentinel=self.sentinel,
            rebooter=self._rebooter if self._rebooter is not None else self._default_rebooter(),
            blockers=self._blockers
            if self._blockers is not None
            else self._default_blockers(self._kube, budget),
            clock=self.clock,
            metrics=self.metrics,
            recovery=self._recovery
            if self._recovery is not None
            else WorkloadRecovery(kube=self._kube, clock=self.clock, pod_selector=s.drain_pod_selector),
            budget=budget,
            notify=self._notify if self._notify is not None else self._default_notify(),
            flush_notifications=self._flush_notifications if self._notifier is not None else None,
        )

    async def _run_cycle(self, stop: asyncio.Event) -> None:
        cycle = await self._setup_cycle(stop)
        if cycle is None:
            return
        self.cycle = cycle
        await self.sentinel.first_check.wait()
        self._ready = True
        await cycle.run(stop)


def _label_map(pairs: Sequence[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)
