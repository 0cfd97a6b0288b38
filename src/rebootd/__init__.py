"""rebootd: a Kubernetes reboot daemon.

Rule: the package root imports nothing heavy; every module states its own rule in its docstring,
and the dependency direction in DESIGN.md is enforced by import-linter.
"""

__version__ = "0.1.0"
