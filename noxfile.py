"""Developer and CI sessions: `nox` runs tests, lint and typecheck (the default set).

Rule: everything the tests need is installed by this file (pip packages through the project's
extras, Debian packages through apt-get), so a fresh machine needs only `pip install nox && nox`.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "manifests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
# Debian packages whose real binaries the integration tests run against.
DEBIAN_TOOLS = {"prometheus": "prometheus", "openssl": "openssl"}


def _ensure_debian_tools(session: nox.Session) -> None:
    """Install missing Debian tools with apt-get when we are root (CI and the dev machines are)."""
    missing = [pkg for binary, pkg in DEBIAN_TOOLS.items() if shutil.which(binary) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        session.warn(f"missing {missing}; install them with apt-get (tests needing them will fail)")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run(
        "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, external=True, env=env
    )


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and integration tests against the emulator, the real kubectl and the real Prometheus."""
    _ensure_debian_tools(session)
    session.install(".[test]")
    ignored = (*MANIFEST_TESTS, CONTROL_PLANE_TESTS)
    # the contract suite's real-apiserver cases are marked `controlplane`: the controlplane session runs them
    session.run(
        "pytest", *[f"--ignore={path}" for path in ignored], "-m", "not controlplane", *session.posargs
    )


MANIFEST_TESTS = ("tests/integration/test_manifests.py", "tests/integration/test_grafana_dashboard.py")
# Run by the `controlplane` session (not yet in the default run: a cold build takes minutes).
CONTROL_PLANE_TESTS = "tests/integration/controlplane"
CONTRACT_TESTS = tuple(
    f"tests/integration/emulator/test_contract_{name}.py"
    for name in ("basics", "patch_and_list", "watch", "eviction", "cluster")
)


@nox.session(python=PYTHON)
def controlplane(session: nox.Session) -> None:
    """The real control plane: build etcd, kube-apiserver, kube-controller-manager and
    kube-scheduler at the pinned release from the Go wrapper module in controlplane/ (Go 1.26;
    minutes cold, seconds when cached outside the tree), print their versions, and run the tests
    that start them (the start time and memory figures are printed) and the emulator's contract
    suite on both the emulator and the real apiserver (the fidelity figure is printed)."""
    _ensure_debian_tools(session)  # openssl signs the ServiceAccount tokens
    session.install(".[test]")
    session.run("python", "-m", "rebootd.controlplane", "build")
    session.run("pytest", CONTROL_PLANE_TESTS, *CONTRACT_TESTS, "-s", *session.posargs)


@nox.session(python=PYTHON)
def manifests(session: nox.Session) -> None:
    """kustomize builds, Kubernetes 1.32 schema validation, promtool alert tests, checkov, hadolint."""
    _ensure_debian_tools(session)  # promtool comes with Debian's prometheus package
    session.install(".[test,manifests]")
    session.run("pytest", *MANIFEST_TESTS, *session.posargs)


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """The long chaos suite: 200 seeded simulated rollouts under heavy faults (the default test
    run takes the first 50); every safety invariant must hold in every run."""
    session.install(".[test]")
    session.run("pytest", "tests/chaos", *session.posargs, env={"REBOOTD_CHAOS_SEEDS": "200"})


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against the targets of the benchmark issue: footprint and start-up of a real
    `rebootd run`, API requests of idle and waiting nodes, writes per hand-off, hand-off gaps,
    rollout overhead, emulator throughput. Writes bench/results.json and prints a table. Only the
    package is installed (no lint or test tools), as in the image."""
    session.install(".")
    session.run("python", "-m", "bench.run", *session.posargs)


@nox.session(python=PYTHON)
def mutants(session: nox.Session) -> None:
    """Mutation score of the safety-critical decisions (the lock state, pods, the drain's filters,
    the recovery gate, the maintenance window, the settings' validators; or the modules named:
    `nox -s mutants -- lockstate`) with the fast unit tests that claim them ([tool.mutmut] in
    pyproject.toml). Prints killed / survived / untested / equivalent (explained in
    tests/mutation/equivalent.toml) per module and every survivor; fails below 90%. Not in the
    default set: minutes on 2 cores (run it with `nice`)."""
    session.install("-e", ".[test]", "mutmut>=3.8,<4")
    modules = session.posargs  # none: tests.mutation.report's DEFAULT_MODULES
    shutil.rmtree("mutants", ignore_errors=True)  # a standing figure: no results from an older tree
    globs = session.run("python", "-m", "tests.mutation.report", "globs", *modules, silent=True)
    assert isinstance(globs, str)
    cores = str(max(1, len(os.sched_getaffinity(0))))
    session.run("mutmut", "run", "--max-children", cores, *globs.split())
    session.run("python", "-m", "tests.mutation.report", "score", "--min", "90", *modules)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) and the import-linter layer contracts from DESIGN.md."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "noxfile.py")
    session.run("lint-imports")
    session.run("hadolint", "Containerfile")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    session.install("-e", ".[test,typecheck]")
    session.run("mypy")
