"""rebootd: a Kubernetes reboot daemon.

Rule: the package root imports nothing heavy; every module states its own rule in its docstring,
and the dependency direction described in docs/design.md is enforced by import-linter (the
contracts in pyproject.toml).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    # One source: the installed distribution's metadata, which hatch-vcs took from the git tag.
    __version__ = version("rebootd")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"
