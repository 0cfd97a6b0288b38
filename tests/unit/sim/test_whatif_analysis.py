"""The what-if's pure parts: what a snapshot keeps, which nodes can never be rebooted and why,
the nights of a window, and which concurrency would fit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rebootd.settings import load_settings
from rebootd.sim import snapshot as snap
from rebootd.sim import whatif

SNAPSHOTS = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots"


def _large() -> snap.Snapshot:
    return snap.load(SNAPSHOTS / "large.yaml")


def test_the_large_snapshot_is_three_hundred_nodes_in_three_zones_with_a_two_night_window() -> None:
    large = _large()
    zones = {n["labels"]["topology.kubernetes.io/zone"] for n in large.nodes}
    assert len(large.nodes) == 300
    assert zones == {"zone-a", "zone-b", "zone-c"}
    settings = load_settings(environ=large.rebootd_env())
    nights = whatif.nights_of(settings.window, start=datetime(2025, 1, 6, 12, tzinfo=UTC), count=2)
    # the window ends inclusively at 02:30:00, so it closes at 02:30:01
    assert [(o.isoformat(), c.isoformat()) for o, c in nights] == [
        ("2025-01-07T01:00:00+00:00", "2025-01-07T02:30:01+00:00"),
        ("2025-01-08T01:00:00+00:00", "2025-01-08T02:30:01+00:00"),
    ]


def test_never_rebooted_names_the_pdb_pinned_node_the_blocked_node_and_the_untolerated_taints() -> None:
    large = _large()
    reasons = whatif.never_rebooted(large, load_settings(environ=large.rebootd_env()))
    assert sorted(reasons) == ["node-a-075", "node-b-040", "node-c-098", "node-c-099"]
    assert "PodDisruptionBudget default/ledger allows no disruption" in reasons["node-b-040"]
    assert "nothing can raise it" in reasons["node-b-040"]
    assert "blocking pod default/backup-job" in reasons["node-a-075"]
    assert (
        reasons["node-c-098"]
        == "taint nvidia.com/gpu=present:NoExecute not tolerated by the rebootd DaemonSet"
    )


def test_a_pdb_with_an_unready_pod_is_not_called_unrecoverable() -> None:
    large = _large()
    pods = [dict(p, ready=False) if p["name"] == "ledger-0" else p for p in large.pods]
    changed = snap.Snapshot(nodes=large.nodes, pods=pods, pdbs=large.pdbs, workloads=large.workloads)
    reasons = whatif.never_rebooted(changed, load_settings(environ={}))
    assert not any("ledger" in why for why in reasons.values())


def test_a_wrapping_window_is_one_night_from_its_start_to_its_end() -> None:
    window = load_settings(environ={"REBOOTD_START_TIME": "22:00", "REBOOTD_END_TIME": "04:00"}).window
    nights = whatif.nights_of(window, start=datetime(2025, 1, 6, 12, tzinfo=UTC), count=2)
    assert nights[0] == (datetime(2025, 1, 6, 22, tzinfo=UTC), datetime(2025, 1, 7, 4, 0, 1, tzinfo=UTC))
    assert nights[1][0] == datetime(2025, 1, 7, 22, tzinfo=UTC)


def test_the_suggestion_is_the_smallest_concurrency_that_fits_with_a_zone_limit() -> None:
    fits = whatif.estimate_fit(
        per_zone={"a": 30, "b": 30, "c": 30}, cycle=600.0, night_seconds=[6 * 3600.0, 6 * 3600.0]
    )
    by = {(f.concurrency, f.zone_concurrency): f for f in fits}
    assert by[(1, 0)].rounds == 90
    assert by[(1, 0)].nights == 3
    assert not by[(1, 0)].fits
    assert by[(2, 1)].rounds == 45
    assert by[(2, 1)].nights == 2
    assert by[(2, 1)].fits
    best = whatif.suggestion(fits)
    assert best is not None
    assert (best.concurrency, best.zone_concurrency) == (2, 1)


def test_no_suggestion_when_a_node_cycle_is_longer_than_a_night() -> None:
    fits = whatif.estimate_fit(per_zone={"a": 3}, cycle=7200.0, night_seconds=[3600.0])
    assert all(f.nights is None and not f.fits for f in fits)
    assert whatif.suggestion(fits) is None


def _api_objects() -> dict[str, list[dict[str, Any]]]:
    secret_env = [
        {"name": "REBOOTD_START_TIME", "value": "22:00"},
        {"name": "REBOOTD_NOTIFY_URL", "valueFrom": {"secretKeyRef": {"name": "hooks", "key": "url"}}},
        {"name": "DB_PASSWORD", "value": "hunter2"},
    ]
    pod_spec = {
        "nodeName": "n1",
        "containers": [{"name": "app", "image": "registry.example/private/app:1", "env": secret_env}],
        "volumes": [{"name": "s", "secret": {"secretName": "creds"}}, {"name": "t", "emptyDir": {}}],
        "terminationGracePeriodSeconds": 45,
    }
    return {
        "nodes": [
            {
                "metadata": {
                    "name": "n1",
                    "labels": {"topology.kubernetes.io/zone": "z1", "team": "payments"},
                    "annotations": {"secret-ish": "x"},
                },
                "spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "addresses": [{"address": "10.0.0.1"}],
                },
            }
        ],
        "pods": [
            {
                "metadata": {
                    "namespace": "shop",
                    "name": "app-1",
                    "labels": {"app": "app"},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "app-7", "controller": True}],
                },
                "spec": pod_spec,
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            }
        ],
        "pdbs": [
            {"metadata": {"namespace": "shop", "name": "app"}, "spec": {"minAvailable": 1, "selector": {}}}
        ],
        "controllers": [
            {
                "kind": "DaemonSet",
                "metadata": {"namespace": "kube-system", "name": "rebootd"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "rebootd",
                                    "image": "x",
                                    "env": secret_env,
                                    "envFrom": [{"configMapRef": {"name": "rebootd-settings"}}],
                                }
                            ]
                        }
                    }
                },
            },
            {
                "kind": "ReplicaSet",
                "metadata": {"namespace": "shop", "name": "app-7"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "app"}},
                    "template": {"spec": pod_spec},
                },
            },
        ],
    }


def test_a_snapshot_keeps_what_a_rollout_needs_and_no_secret_image_or_env_value() -> None:
    objects = _api_objects()
    taken = snap.strip(
        nodes=objects["nodes"], pods=objects["pods"], pdbs=objects["pdbs"], controllers=objects["controllers"]
    )
    text = taken.to_yaml()
    for leaked in ("hunter2", "DB_PASSWORD", "registry.example", "creds", "hooks", "payments", "10.0.0.1"):
        assert leaked not in text, leaked
    assert taken.rebootd_env() == {"REBOOTD_START_TIME": "22:00"}  # literal REBOOTD_* only, no valueFrom
    assert taken.rebootd["unread"] == ["ConfigMap rebootd-settings", "REBOOTD_NOTIFY_URL (valueFrom)"]
    pod = taken.pods[0]
    assert pod["terminationGracePeriodSeconds"] == 45
    assert pod["localStorage"] is True
    assert pod["owner"] == {"kind": "ReplicaSet", "name": "app-7"}
    assert taken.nodes[0]["taints"] == []  # the node lifecycle controller's own taint is not kept
    assert taken.nodes[0]["labels"] == {"topology.kubernetes.io/zone": "z1"}


def test_a_snapshot_survives_its_yaml(tmp_path: Path) -> None:
    objects = _api_objects()
    taken = snap.strip(
        nodes=objects["nodes"], pods=objects["pods"], pdbs=objects["pdbs"], controllers=objects["controllers"]
    )
    path = tmp_path / "s.yaml"
    path.write_text(taken.to_yaml(), encoding="utf-8")
    again = snap.load(path)
    assert (again.nodes, again.pods, again.pdbs, again.workloads) == (
        taken.nodes,
        taken.pods,
        taken.pdbs,
        taken.workloads,
    )


def test_a_measured_night_caps_the_rounds_the_cycle_alone_would_promise() -> None:
    fits = whatif.estimate_fit(
        per_zone={"a": 20, "b": 20, "c": 16}, cycle=360.0, night_seconds=[5400.0, 5400.0], rounds_per_night=11
    )
    by = {(f.concurrency, f.zone_concurrency): f for f in fits}
    assert by[(1, 0)].nights == 6  # 56 rounds at 11 a night, not 4 at the cycle's 15
    best = whatif.suggestion(fits)
    assert best is not None
    assert (best.concurrency, best.zone_concurrency) == (3, 1)  # 20 rounds (a zone of 20 at 1), 2 nights


def test_a_night_queues_only_the_nodes_it_could_reach_the_zones_in_turn_and_every_pinned_node() -> None:
    zones = {f"n-{z}-{i:02d}": z for z in ("a", "b", "c") for i in range(40)}
    pinned = {"n-b-39": "a PDB allows nothing"}
    queued, held = whatif.night_queue(
        waiting=list(zones),
        zones=zones,
        pinned=pinned,
        concurrency=2,
        night_seconds=5400.0,
        boot_seconds=180.0,
    )
    # 90 minutes of 3-minute boots: at most 30 rounds of 2 nodes; one round more for the margin
    assert len([n for n in queued if n not in pinned]) == 2 * 31
    assert "n-b-39" in queued
    assert set(queued) | set(held) == set(zones)
    assert not set(queued) & set(held)
    first = [n for n in ("n-a-00", "n-b-00", "n-c-00", "n-a-01") if n in queued]
    assert first == ["n-a-00", "n-b-00", "n-c-00", "n-a-01"]  # the zones in turn, each in name order
    assert {n.split("-")[1] for n in queued} == {"a", "b", "c"}
    assert max(int(n.split("-")[2]) for n in queued if n not in pinned) == 20  # 62 nodes over 3 zones


def test_a_night_that_could_reach_every_node_holds_none_back() -> None:
    zones = {f"n{i}": "z" for i in range(5)}
    queued, held = whatif.night_queue(
        waiting=list(zones), zones=zones, pinned={}, concurrency=1, night_seconds=3600.0, boot_seconds=180.0
    )
    assert queued == tuple(zones)
    assert held == ()


def test_the_replay_scales_the_users_timeouts_given_or_not() -> None:
    settings = load_settings(environ={"REBOOTD_DRAIN_TIMEOUT": "30m"})
    env, _ignored = whatif.daemon_env(settings, given={"REBOOTD_DRAIN_TIMEOUT": "30m"}, speed=60.0)
    assert env["REBOOTD_DRAIN_TIMEOUT"] == "30s"
    assert env["REBOOTD_BOOT_TIMEOUT"] == "15s"  # the default 900 s, never the simulator's few seconds
    assert env["REBOOTD_RECOVERY_TIMEOUT"] == "15s"


def test_a_verifying_replay_that_reboots_fewer_nodes_on_its_first_night_did_not_keep_up() -> None:
    assert whatif.kept_up(base=18, verified=18)
    assert whatif.kept_up(base=18, verified=40)
    assert not whatif.kept_up(base=18, verified=2)  # measured: 296 daemons at concurrency 10, 60x
