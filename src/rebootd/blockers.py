"""Blockers: the reasons a node that needs a reboot must still wait.

Rule: a blocker answers one question, "must this node wait right now?", with `None` (no) or a
`BlockReason` (yes, and why). It fails safe: when it cannot find out (the source is unreachable,
slow, or answers something it does not understand) the answer is "wait", never "go". A reason's
`kind` is a short stable label (the `rebootd_blocked{reason}` gauge); its `detail` is for humans
and never carries a credential. Blockers hold no global state. The Kubernetes-based ones (blocking
pods, the PDB preflight, the unavailable-node budget) go through the lean `kube` facade and reuse
drain's pod filters, so they judge exactly the pods a drain would evict.

The Prometheus blocker keeps kured's semantics (`--prometheus-url`, `--alert-filter-regexp`,
`--alert-firing-only`, `--alert-filter-match-only`): every active alert (pending or firing)
blocks; `firing_only` ignores pending ones; an alert whose `alertname` the filter finds
(an unanchored search, like Go's `MatchString`) is ignored, or with `filter_match_only` it is the
only kind that blocks. The alerts are read as kured reads them, with the PromQL query `ALERTS`
(`source="query"`: Thanos, Mimir and VictoriaMetrics serve it), or from `/api/v1/alerts`
(`source="api"`: the rule manager's current state, Prometheus itself only). The query blocker
(`REBOOTD_PROMETHEUS_QUERY`, kured#385) blocks while any PromQL expression has a result. The
HTTP call is a single aiohttp GET (no client library for Prometheus' HTTP API is a dependency of
ours, and the API is one endpoint); redirects are not followed, so an Authorization header never
travels to another origin.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import structlog
from yarl import URL

from rebootd.clock import Clock
from rebootd.kube import Kube, KubeError
from rebootd.pods import covering_pdbs, evictable_pods, is_finished, pdb_refusal, pod_key

ALERTS_PATH = "/api/v1/alerts"
QUERY_PATH = "/api/v1/query"
ALERTS_QUERY = "ALERTS"
MAX_NAMES_IN_DETAIL = 10
ACTIVE_STATES = frozenset({"pending", "firing"})


@dataclass(frozen=True)
class BlockReason:
    """Why a node must wait: `kind` labels the metric, `detail` names the alerts or the error."""

    kind: str
    detail: str


class Blocker(Protocol):
    """One concern that can hold a reboot back (kured's RebootBlocker).

    `at_slot` blockers concern only the moment the node takes a slot (the PDB preflight): the
    cycle asks them when the node first needs a reboot, then every period only while they block
    or while the node is next in line, never with an answer older than one period when it takes
    the slot. The others are asked every period while the node waits."""

    name: str
    at_slot: bool

    async def check(self) -> BlockReason | None:
        """`None` when this blocker does not block now; otherwise the reason."""
        ...


@dataclass(frozen=True)
class ActiveAlert:
    """An alert Prometheus reports as active: its `alertname` and state (`pending` / `firing`)."""

    name: str
    state: str


class PrometheusAnswerError(ValueError):
    """Prometheus answered, but not with a successful alerts document."""


def parse_alerts(payload: object) -> list[ActiveAlert]:
    """The active alerts in a decoded `/api/v1/alerts` answer; raises PrometheusAnswerError.

    Entries without an `alertname` label are skipped (as kured skips samples without one); an
    entry without a state counts as pending, so it still blocks unless `firing_only`.
    """
    if not isinstance(payload, dict):
        raise PrometheusAnswerError("answer is not a JSON object")
    status = payload.get("status")
    if status != "success":
        error_type = payload.get("errorType", "")
        error = payload.get("error", "")
        raise PrometheusAnswerError(f"status {status!r} {error_type} {error}".strip()[:300])
    data = payload.get("data")
    alerts = data.get("alerts") if isinstance(data, dict) else None
    if not isinstance(alerts, list):
        raise PrometheusAnswerError("answer has no data.alerts list")
    active: list[ActiveAlert] = []
    for entry in alerts:
        labels = entry.get("labels") if isinstance(entry, dict) else None
        name = labels.get("alertname") if isinstance(labels, dict) else None
        if not isinstance(name, str) or not name:
            continue
        state = entry.get("state")
        active.append(ActiveAlert(name=name, state=state if isinstance(state, str) else "pending"))
    return active


def parse_query_result(payload: object) -> list[dict[str, str]]:
    """The series (label sets) of a decoded `/api/v1/query` answer whose value is not 0; a scalar
    counts as one series unless it is 0. Raises PrometheusAnswerError."""
    if not isinstance(payload, dict):
        raise PrometheusAnswerError("answer is not a JSON object")
    if payload.get("status") != "success":
        error = f"{payload.get('errorType', '')} {payload.get('error', '')}".strip()
        raise PrometheusAnswerError(f"status {payload.get('status')!r} {error}".strip()[:300])
    data = payload.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return [] if _is_zero(result[1]) else [{}]
    if kind not in {"vector", "matrix"} or not isinstance(result, list):
        raise PrometheusAnswerError(f"answer has no vector result (resultType {kind!r})")
    series: list[dict[str, str]] = []
    for entry in result:
        metric = entry.get("metric") if isinstance(entry, dict) else None
        if not isinstance(metric, dict):
            continue
        value = entry.get("value")
        if kind == "vector" and isinstance(value, list) and len(value) == 2 and _is_zero(value[1]):
            continue  # kured skips ALERTS samples whose value is 0
        series.append({str(k): str(v) for k, v in metric.items()})
    return series


def _is_zero(value: object) -> bool:
    try:
        return float(str(value)) == 0
    except ValueError:
        return False


def alerts_from_series(series: Iterable[Mapping[str, str]]) -> list[ActiveAlert]:
    """kured's reading of the `ALERTS` series: `alertname` and `alertstate` labels."""
    return [
        ActiveAlert(name=labels["alertname"], state=labels.get("alertstate") or "pending")
        for labels in series
        if labels.get("alertname")
    ]


def describe_series(series: Sequence[Mapping[str, str]], *, limit: int = 3) -> str:
    """`2 series: {job="a"}, {job="b"}` for a block reason."""
    shown = [
        "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" for labels in series[:limit]
    ]
    more = f", +{len(series) - limit} more" if len(series) > limit else ""
    return f"{len(series)} series: {', '.join(shown)}{more}"


def blocking_alert_names(
    alerts: Iterable[ActiveAlert],
    *,
    filter_regexp: re.Pattern[str] | None,
    filter_match_only: bool,
    firing_only: bool,
) -> list[str]:
    """kured's ActiveAlerts: the sorted, distinct names of the alerts that block a reboot."""
    names: set[str] = set()
    for alert in alerts:
        if alert.state not in ACTIVE_STATES:
            continue
        if firing_only and alert.state != "firing":
            continue
        if filter_regexp is not None and (filter_regexp.search(alert.name) is not None) != filter_match_only:
            continue
        names.add(alert.name)
    return sorted(names)


def describe_alerts(names: Sequence[str], *, limit: int = MAX_NAMES_IN_DETAIL) -> str:
    """`3 active alerts: A, B, C`, naming at most `limit` alerts and then `+N more`."""
    shown = ", ".join(names[:limit])
    more = f", +{len(names) - limit} more" if len(names) > limit else ""
    noun = "alert" if len(names) == 1 else "alerts"
    return f"{len(names)} active {noun}: {shown}{more}"


def redact_url(url: URL) -> str:
    """The URL without user info, query and fragment, safe for reasons, logs and reprs."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


class PrometheusAlertBlocker:
    """Blocks while Prometheus reports active alerts selected by kured's filter rules.

    The caller owns `session`. `url` is the Prometheus base URL (a path prefix is kept); user
    info in it is used as basic auth and never shown. `ca_file` replaces the trusted CAs for
    this endpoint only. `timeout` bounds the whole request, connection included.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        filter_regexp: re.Pattern[str] | None,
        filter_match_only: bool,
        firing_only: bool,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        source: str = "api",
    ) -> None:
        if source not in {"api", "query"}:
            raise ValueError(f"prometheus alerts source must be 'api' or 'query', got {source!r}")
        self._source = source
        parsed = URL(url)
        safe_url = redact_url(parsed)
        if parsed.scheme not in {"http", "https"} or not parsed.host:
            raise ValueError(f"prometheus url must be http(s)://host[:port][/path], got {safe_url!r}")
        if parsed.query_string or parsed.fragment:
            raise ValueError(f"prometheus url must not carry a query or fragment: {safe_url!r}")
        if parsed.user is not None:
            if basic_auth is not None or bearer_token is not None:
                raise ValueError(f"prometheus url {safe_url!r} has user info and other credentials are set")
            basic_auth = (parsed.user, parsed.password or "")
        if bearer_token is not None and basic_auth is not None:
            raise ValueError("set either a bearer token or basic auth for prometheus, not both")
        credentials = [bearer_token or "", *(basic_auth or ())]
        if any("\r" in value or "\n" in value for value in credentials):
            raise ValueError("prometheus credentials contain a line break (a token file's trailing newline?)")
        if timeout <= 0:
            raise ValueError(f"prometheus timeout must be positive, got {timeout}")

        base = parsed.with_user(None)
        self.name = "prometheus"
        self.at_slot = False
        self._session = session
        self._base_url = safe_url
        self._endpoint = base.with_path(base.path.rstrip("/") + ALERTS_PATH)
        self._query_endpoint = base.with_path(base.path.rstrip("/") + QUERY_PATH)
        self._filter_regexp = filter_regexp
        self._filter_match_only = filter_match_only
        self._firing_only = firing_only
        self._timeout = timeout
        self._ca_file = ca_file
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
        )
        self._headers: dict[str, str] = {"Accept": "application/json"}
        self._secrets: tuple[str, ...] = ()
        self._auth_kind: str | None = None
        if bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
            self._secrets = (bearer_token,)
            self._auth_kind = "bearer"
        elif basic_auth is not None:
            header = aiohttp.encode_basic_auth(basic_auth[0], basic_auth[1])
            self._headers["Authorization"] = header
            self._secrets = (basic_auth[1], header.removeprefix("Basic "))
            self._auth_kind = "basic"
        self._log = structlog.get_logger().bind(blocker=self.name, url=self._base_url)

    def __repr__(self) -> str:
        pattern = self._filter_regexp.pattern if self._filter_regexp is not None else None
        return (
            f"PrometheusAlertBlocker(url={self._base_url!r}, filter_regexp={pattern!r}, "
            f"filter_match_only={self._filter_match_only}, firing_only={self._firing_only}, "
            f"auth={self._auth_kind!r}, ca_file={self._ca_file!r}, timeout={self._timeout})"
        )

    async def check(self) -> BlockReason | None:
        """Ask Prometheus once: the blocking alerts, `prometheus_unreachable`, or `None`.

        Network, TLS, HTTP and protocol failures become `prometheus_unreachable`; anything else
        that escapes is a bug, and the caller treats a blocker that raises as blocking.
        """
        try:
            alerts = await self._fetch_alerts()
        except (aiohttp.ClientError, TimeoutError, OSError, PrometheusAnswerError) as exc:
            error = self._scrub(self._describe_error(exc))
            self._log.warning("rebootd.blockers.prometheus_unreachable", error=error)
            return BlockReason(kind="prometheus_unreachable", detail=f"prometheus {self._base_url}: {error}")
        names = blocking_alert_names(
            alerts,
            filter_regexp=self._filter_regexp,
            filter_match_only=self._filter_match_only,
            firing_only=self._firing_only,
        )
        if not names:
            self._log.debug("rebootd.blockers.prometheus_clear", active=len(alerts))
            return None
        detail = self._scrub(describe_alerts(names))
        self._log.info(
            "rebootd.blockers.prometheus_blocked", count=len(names), alerts=names[:MAX_NAMES_IN_DETAIL]
        )
        return BlockReason(kind="prometheus_alerts", detail=detail)

    async def _fetch_alerts(self) -> list[ActiveAlert]:
        if self._source == "query":
            return alerts_from_series(await self._query(ALERTS_QUERY))
        return parse_alerts(await self._get_json(self._endpoint))

    async def _query(self, expression: str) -> list[dict[str, str]]:
        """One instant PromQL query (GET /api/v1/query): the series of its result."""
        return parse_query_result(await self._get_json(self._query_endpoint.with_query(query=expression)))

    async def _get_json(self, endpoint: URL) -> object:
        async with self._session.get(
            endpoint,
            headers=self._headers,
            ssl=self._ssl,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            allow_redirects=False,
        ) as response:
            body = await response.read()
            if not 200 <= response.status < 300:
                raise PrometheusAnswerError(self._http_error(response.status, response.reason, body))
        try:
            return json.loads(body)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise PrometheusAnswerError(f"answer is not JSON ({type(exc).__name__})") from exc

    @staticmethod
    def _http_error(status: int, reason: str | None, body: bytes) -> str:
        """`HTTP 503 Service Unavailable`, plus Prometheus' own error text when it sent one."""
        message = f"HTTP {status} {reason or ''}".strip()
        if 300 <= status < 400:
            return f"{message} (redirects are not followed: configure the final URL)"
        try:
            parse_alerts(json.loads(body))
        except PrometheusAnswerError as exc:
            return f"{message}: {exc}"
        except ValueError:
            pass
        return message

    def _describe_error(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError) and not str(exc):
            return f"no answer within {self._timeout:g}s"
        if isinstance(exc, PrometheusAnswerError):
            return str(exc)
        return f"{type(exc).__name__}: {exc}"

    def _scrub(self, text: str) -> str:
        """Defence in depth: no credential survives into a reason or a log line."""
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


class PrometheusQueryBlocker(PrometheusAlertBlocker):
    """`REBOOTD_PROMETHEUS_QUERY`: blocks while a PromQL expression's result is not empty (kured#385).

    Same connection rules as the alert blocker (credentials, CA, timeout, no redirects); fails safe
    the same way (`prometheus_unreachable`, also for a query Prometheus refuses)."""

    def __init__(self, *, session: aiohttp.ClientSession, url: str, query: str, **kwargs: Any) -> None:
        if not query.strip():
            raise ValueError("prometheus query must not be empty")
        super().__init__(
            session=session, url=url, filter_regexp=None, filter_match_only=False, firing_only=False, **kwargs
        )
        self.name = "prometheus-query"
        self._expression = query
        self._log = self._log.bind(blocker=self.name)

    async def check(self) -> BlockReason | None:
        try:
            series = await self._query(self._expression)
        except (aiohttp.ClientError, TimeoutError, OSError, PrometheusAnswerError) as exc:
            error = self._scrub(self._describe_error(exc))
            self._log.warning("rebootd.blockers.prometheus_unreachable", error=error)
            return BlockReason(kind="prometheus_unreachable", detail=f"prometheus {self._base_url}: {error}")
        if not series:
            self._log.debug("rebootd.blockers.prometheus_query_clear")
            return None
        self._log.info("rebootd.blockers.prometheus_query_blocked", count=len(series))
        return BlockReason(
            kind="prometheus_query",
            detail=self._scrub(f"query {self._expression[:200]!r}: {describe_series(series)}"),
        )


def prometheus_blockers(
    *,
    session: aiohttp.ClientSession,
    url: str,
    alerts_source: str,
    query: str,
    filter_regexp: re.Pattern[str] | None,
    filter_match_only: bool,
    firing_only: bool,
    bearer_token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    ca_file: Path | None = None,
) -> list[Blocker]:
    """The Prometheus blockers a configuration asks for: the alerts (kured's) and, when a query is
    given, the query blocker. The daemon's one call (it passes the settings' values)."""
    common: dict[str, Any] = {"bearer_token": bearer_token, "basic_auth": basic_auth, "ca_file": ca_file}
    found: list[Blocker] = [
        PrometheusAlertBlocker(
            session=session,
            url=url,
            filter_regexp=filter_regexp,
            filter_match_only=filter_match_only,
            firing_only=firing_only,
            source=alerts_source,
            **common,
        )
    ]
    if query.strip():
        found.append(PrometheusQueryBlocker(session=session, url=url, query=query, **common))
    return found


# --- Kubernetes-based blockers ----------------------------------------------------------------


class PodBlocker:
    """kured's `--blocking-pod-selector`: a matching pod blocks. Scope `node` (kured) looks at the
    pods on this node; scope `cluster` at every pod in the cluster."""

    name = "blocking-pods"
    at_slot = False

    def __init__(self, *, kube: Kube, node: str, selectors: Sequence[str], scope: str = "node") -> None:
        self._kube = kube
        self._node = node
        self._selectors = tuple(s for s in selectors if s.strip())
        self._scope = scope

    async def check(self) -> BlockReason | None:
        field = f"spec.nodeName={self._node}" if self._scope == "node" else None
        found: list[str] = []
        for selector in self._selectors:
            try:
                pods = await self._kube.list_pods(field_selector=field, label_selector=selector)
            except KubeError as exc:
                return BlockReason(kind="blocking_pods_unknown", detail=f"cannot list pods: {exc}")
            found += [f"{pod_key(p)} ({selector})" for p in pods if not is_finished(p)]
        if not found:
            return None
        where = "on this node" if self._scope == "node" else "in the cluster"
        return BlockReason(
            kind="blocking_pods", detail=f"blocking pods {where}: {describe_alerts(sorted(found))}"
        )


class PdbPreflight:
    """Before taking a slot: every PDB covering a pod the drain would evict must allow a disruption,
    and no pod may be covered by two PDBs (the eviction API refuses those with a 500). A blocked
    node does not take a slot, so it cannot stall the nodes behind it."""

    name = "pdb-preflight"
    at_slot = True  # two lists per check: only for the nodes about to take a slot

    def __init__(self, *, kube: Kube, node: str, pod_selector: str, clock: Clock) -> None:
        self._kube = kube
        self._node = node
        self._pod_selector = pod_selector
        self._clock = clock

    async def check(self) -> BlockReason | None:
        try:
            pods = await self._kube.list_pods(field_selector=f"spec.nodeName={self._node}")
            candidates = evictable_pods(pods, pod_selector=self._pod_selector, now=self._clock.now())
            if not candidates:
                return None
            pdbs = await self._kube.list_pdbs()
        except KubeError as exc:
            return BlockReason(kind="pdb_unknown", detail=f"cannot read pods or PodDisruptionBudgets: {exc}")
        for pod in candidates:
            covering = covering_pdbs(pod, pdbs)
            if len(covering) > 1:
                names = ", ".join(sorted(p["metadata"]["name"] for p in covering))
                return BlockReason(
                    kind="pdb_multiple",
                    detail=f"pod {pod_key(pod)} is covered by more than one PodDisruptionBudget ({names}); "
                    "the eviction API cannot evict it",
                )
            if covering:
                refusal = pdb_refusal(pod, covering[0])
                if refusal is not None:
                    return BlockReason(
                        kind="pdb", detail=f"{refusal}: pod {pod_key(pod)} could not be evicted"
                    )
        return None


def node_unavailable(node: Mapping[str, Any]) -> bool:
    """NotReady or unschedulable, for any reason (the budget counts them all)."""
    if (node.get("spec") or {}).get("unschedulable"):
        return True
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") != "True")
    return True


class NodeBudget:
    """`max-unavailable-nodes` (cluster-wide and per zone): nodes already NotReady or unschedulable
    for any reason count, so rebootd never takes down the last healthy nodes. `unavailable` (by
    zone, other nodes only) also goes into the lock's decision, so the limit is checked in the
    same write that takes the slot."""

    name = "node-budget"
    at_slot = False

    def __init__(
        self,
        *,
        kube: Kube,
        node: str,
        zone_label: str,
        max_unavailable: int | None,
        max_unavailable_per_zone: int | None,
    ) -> None:
        self._kube = kube
        self._node = node
        self._zone_label = zone_label
        self._max = max_unavailable
        self._max_zone = max_unavailable_per_zone
        self.unavailable: dict[str, list[str]] = {}
        self.zone = ""

    async def check(self) -> BlockReason | None:
        try:
            nodes = await self._kube.list_nodes()
        except KubeError as exc:
            return BlockReason(kind="budget_unknown", detail=f"cannot list nodes: {exc}")
        self.unavailable = {}
        for node in nodes:
            name = node["metadata"]["name"]
            zone = (node["metadata"].get("labels") or {}).get(self._zone_label, "")
            if name == self._node:
                self.zone = zone
            elif node_unavailable(node):
                self.unavailable.setdefault(zone, []).append(name)
        total = sum(len(v) for v in self.unavailable.values())
        if self._max is not None and total + 1 > self._max:
            names = sorted(n for v in self.unavailable.values() for n in v)
            return BlockReason(
                kind="budget",
                detail=f"{total} other node(s) unavailable ({', '.join(names)}); "
                f"max-unavailable-nodes is {self._max}",
            )
        in_zone = self.unavailable.get(self.zone, [])
        if self._max_zone is not None and len(in_zone) + 1 > self._max_zone:
            return BlockReason(
                kind="zone_budget",
                detail=f"{len(in_zone)} other node(s) unavailable in zone {self.zone or '-'} "
                f"({', '.join(sorted(in_zone))}); max-unavailable-nodes-per-zone is {self._max_zone}",
            )
        return None

    def counts(self) -> dict[str, int]:
        return {zone: len(names) for zone, names in self.unavailable.items()}
