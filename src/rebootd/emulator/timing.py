"""Timing knobs of the emulated cluster (seconds), scaled down in tests.

Rule: every duration the emulator waits on comes from here; nothing hard-codes a sleep.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmulatorTiming:
    grace_scale: float = 1.0  # multiplies a pod's termination grace period (tests use ~0.01)
    pod_ready_delay: float = 1.0  # a new or restarted pod becomes Ready after this
    boot_seconds: float = 5.0  # a rebooting node is back Ready after this
    bookmark_interval: float = 60.0  # BOOKMARK events on watches that allow them
    disrupted_pod_ttl: float = 120.0  # PDB status.disruptedPods entries expire after this
    continue_ttl: float = 300.0  # continue tokens expire after this (410 Expired)
    partition_hang: float = 2.0  # a partitioned client's request hangs this long, then is dropped
    watch_timeout: float = 1800.0  # server-side watch timeout when the client sets none
    scheduler_retry: float = 0.5  # an unschedulable pod is retried this often
    # A late kubelet: a rebooted machine's status (Ready, the new bootID) is posted this long after
    # the machine is back (its daemon already restarted); until then the Node shows the old boot.
    kubelet_post_delay: float = 0.0
    # The node monitor grace period: a machine that went down still shows Ready=True this long
    # (0: NotReady at once). A machine back and posting before it ends never shows NotReady.
    node_monitor_grace: float = 0.0
    # The kubelet renews its heartbeat Lease in kube-node-lease this often while its machine is up
    # and it is posting (a real kubelet: every 10 s, for a lease of 40 s; the same 1:4 here).
    heartbeat_interval: float = 1.0
    heartbeat_lease_seconds: int = 4
