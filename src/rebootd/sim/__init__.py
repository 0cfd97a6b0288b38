"""The Kubernetes API emulator, the simulated cluster and `rebootd simulate`.

Rule: `sim` may import anything of rebootd; nothing outside the tests and `cli` imports `sim`.
"""
