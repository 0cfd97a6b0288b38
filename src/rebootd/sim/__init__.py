"""The Kubernetes API emulator, the simulated cluster and `rebootd simulate`.

Rule: `sim` may import anything of rebootd; nothing outside the tests and `cli` imports `sim`.

The emulator answers as kube-apiserver 1.32 does for the calls rebootd and kubectl make (the
contract is docs/kube-api-contract.md in this repository). Layers, each in its own module:
- `emulator`: the `Emulator` facade (start/close, kubeconfig, in-process set-up and inspection);
- `apiserver`: HTTP (aiohttp): paths, auth, RBAC, faults, discovery, Tables, lists, watches;
- `registry`: the verbs' semantics (CAS, preconditions, strategies, graceful delete, eviction);
- `store`: plain-dict objects, one resourceVersion, bounded history, watch fan-out;
- `cluster`: kubelet, scheduler, node boots, namespace controller; it drives `workloads`
  (Deployment, ReplicaSet, StatefulSet, DaemonSet, garbage collection) and `disruption` (PDBs);
- `patch`, `validation`, `fieldselectors`, `listing`, `tables`, `resources`, `errors`: pure pieces;
- `faults` and `rbac`: seeded fault injection and RBAC evaluation;
- `cli`: `rebootd emulator`.
"""
