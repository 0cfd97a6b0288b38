"""`python -m rebootd`: the same as the `rebootd` command."""

from rebootd.cli import entry_point

entry_point()
