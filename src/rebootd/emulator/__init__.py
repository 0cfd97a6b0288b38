"""The Kubernetes API emulator: an in-process kube-apiserver stand-in with the controllers a
reboot needs, for speed and for faults a real server will not produce on demand.

Rule: `emulator` imports nothing of `rebootd.sim` (the simulator drives the emulator, never the
other way round) and none of the daemon's modules but the pure vocabulary it shares with them;
nothing outside the tests, `rebootd.sim` and `cli` imports it (import-linter contracts in
pyproject.toml). Where it and the real apiserver disagree, it is wrong until shown otherwise: the
contract suite (tests/integration/emulator/) runs on both.

It answers as kube-apiserver does for the calls rebootd and kubectl make (the contract:
docs/kube-api-contract.md). Layers, each in its own module:
- `emulator`: the `Emulator` facade (start/close, kubeconfig, in-process set-up and inspection);
- `apiserver`: HTTP (aiohttp): paths, auth, RBAC, faults, discovery, Tables, lists, watches;
- `registry`: the verbs' semantics (CAS, preconditions, strategies, graceful delete, eviction);
- `store`: plain-dict objects, one resourceVersion, bounded history, watch fan-out;
- `history`: every request by every user, for the simulator's invariants;
- `cluster`: kubelet, scheduler, node boots and heartbeats, namespace controller; it drives
  `workloads` (Deployment, ReplicaSet, StatefulSet, DaemonSet, garbage collection) and
  `disruption` (PDBs);
- `patch`, `validation`, `fieldselectors`, `listing`, `tables`, `resources`, `objects`, `errors`,
  `timing`: pure pieces;
- `faults`, `scripted` and `rbac`: seeded and scripted fault injection, RBAC evaluation.
"""
