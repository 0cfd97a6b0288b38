"""Tests against the real control plane (built by the default `nox` run before its tests, or by
`nox -s controlplane` alone). The `control_plane*` fixtures come from the
`tests.fixtures.controlplane` plugin."""
