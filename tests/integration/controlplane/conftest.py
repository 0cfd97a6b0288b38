"""Tests against the real control plane (built by `nox -s controlplane`, which also runs them).
The `control_plane*` fixtures come from the `tests.fixtures.controlplane` plugin."""
