"""The simulator: whole simulated clusters running the real daemons, and `rebootd simulate`.

Rule: `sim` may import anything of rebootd, the emulator included; nothing outside the tests and
`cli` imports `sim`, and the emulator never imports it (import-linter contracts in pyproject.toml).
Modules:
- `harness`, `worker`, `processes`: simulated nodes (a machine, its sentinel and boot id, the real
  `Daemon` in-process, in worker processes or as `rebootd run` processes);
- `kubelet`: a simulated kubelet that speaks only the API (for the real control plane);
- `scenarios`, `simulate`: the named scenarios and chaos plans, and the run that carries them out;
- `invariants`, `report`, `audit`: the safety invariants judged from the emulator's history (or a
  real kube-apiserver's audit log) and the report;
- `realrun`: `rebootd simulate --control-plane real`;
- `snapshot`, `whatif`, `whatif_cli`, `timeline_html`: what-if replays of a cluster's snapshot and
  the HTML timeline;
- `live`, `cli`: the live view, `rebootd simulate` and `rebootd emulator`.
"""
