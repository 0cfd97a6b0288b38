"""rebootd: a Kubernetes reboot daemon.

Rule: the package root imports nothing heavy; every module states its own rule in its docstring,
and the dependency direction described in docs/design.md is enforced by import-linter (the
contracts in pyproject.toml).
"""

__version__ = "0.1.0"
