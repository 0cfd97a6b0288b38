"""Build the four control-plane binaries from the Go wrapper module, once per module version.

Rule: the binaries live outside the git tree, in `$XDG_CACHE_HOME/rebootd-controlplane/` (else
`~/.cache/...`), in one directory per build key: the release plus a hash of go.mod, go.sum and
the build recipe (flags, ldflags), so a changed pin builds afresh and an unchanged one costs a
stat. A build writes into a temporary directory and renames it into place only when all four
linked, under a file lock (two builders never race). `go` runs with `GOTOOLCHAIN=local`
(a wrong pin fails instead of fetching a toolchain), `CGO_ENABLED=0`, `-trimpath`, `-pgo=off`,
`-mod=readonly` (go.sum is the truth) and under `nice -n 19` (the machines are small and shared).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

RELEASE = "v1.37.2"
# The release's build date (the k8s.io/kubernetes module's publication time): fixed, so the
# binaries of one build key are the same whoever builds them.
BUILD_DATE = "2026-10-27T12:01:04Z"
COMPONENTS: Mapping[str, str] = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
}
BUILD_COMMAND = "nox -s controlplane"
MODULE_FOLDER = "controlplane"
BUILD_TIMEOUT_SECONDS = 3 * 3600.0
LOCK_TIMEOUT_SECONDS = 3 * 3600.0
_COMPLETE = ".complete"


class BuildError(RuntimeError):
    """The binaries are missing or could not be built; the message says what to run."""


@dataclass(frozen=True)
class Binaries:
    """The four built binaries of one build key."""

    directory: Path
    release: str

    def path(self, component: str) -> Path:
        return self.directory / component

    @property
    def paths(self) -> dict[str, Path]:
        return {name: self.directory / name for name in COMPONENTS}


def version_ldflags(*, release: str) -> str:
    """The -X flags that make `--version` and `/version` report `release` (as Kubernetes' own
    hack/lib/version.sh does, for component-base and client-go)."""
    major, minor = release.removeprefix("v").split(".")[:2]
    values = {
        "gitVersion": release,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": BUILD_DATE,
    }
    return " ".join(
        f"-X {package}.{key}={value}"
        for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
        for key, value in values.items()
    )


def build_flags(*, release: str) -> list[str]:
    return ["-trimpath", "-pgo=off", f"-ldflags={version_ldflags(release=release)}"]


def build_env(*, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = " ".join(part for part in (base.get("GOFLAGS", ""), "-mod=readonly") if part)
    return env


def build_key(*, module_dir: Path, release: str) -> str:
    """The release and a hash of everything that decides the binaries' content."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((module_dir / name).read_bytes())
    digest.update("\0".join(build_flags(release=release)).encode())
    digest.update("\0".join(f"{k}={v}" for k, v in sorted(COMPONENTS.items())).encode())
    return f"{release}-{digest.hexdigest()[:16]}"


def cache_root(*, env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".cache")
    return Path(base) / "rebootd-controlplane"


def find_module_dir(*, start: Path | None = None) -> Path:
    """The `controlplane/` Go module of the checkout: searched upward from `start` (default the
    working directory), then from this file (an editable install)."""
    origins = [start if start is not None else Path.cwd(), Path(__file__).resolve().parent]
    for origin in origins:
        for directory in (origin, *origin.parents):
            candidate = directory / MODULE_FOLDER
            if (candidate / "go.mod").is_file() and (candidate / "go.sum").is_file():
                return candidate
    raise BuildError(
        f"the Go wrapper module ({MODULE_FOLDER}/go.mod) was not found above {origins[0]}: "
        "run from a checkout of rebootd"
    )


def binaries_dir(*, module_dir: Path, release: str, env: Mapping[str, str]) -> Path:
    return cache_root(env=env) / build_key(module_dir=module_dir, release=release)


def locate_binaries(
    *, module_dir: Path | None = None, release: str = RELEASE, env: Mapping[str, str] | None = None
) -> Binaries:
    """The built binaries, or BuildError naming the command that builds them."""
    environ = os.environ if env is None else env
    module = module_dir if module_dir is not None else find_module_dir()
    directory = binaries_dir(module_dir=module, release=release, env=environ)
    if not (directory / _COMPLETE).is_file():
        raise BuildError(
            f"the control-plane binaries ({release}) are not built: run `{BUILD_COMMAND}` "
            f"(they go to {directory})"
        )
    return Binaries(directory=directory, release=release)


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def build_binaries(
    *,
    module_dir: Path | None = None,
    release: str = RELEASE,
    env: Mapping[str, str] | None = None,
    go: str = "go",
    run: Runner = subprocess.run,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] = lambda _line: None,
) -> Binaries:
    """Build the four binaries unless this build key is already built; returns them."""
    environ = dict(os.environ if env is None else env)
    module = module_dir if module_dir is not None else find_module_dir()
    directory = binaries_dir(module_dir=module, release=release, env=environ)
    if (directory / _COMPLETE).is_file():
        return Binaries(directory=directory, release=release)
    go_path = shutil.which(go, path=environ.get("PATH"))
    if go_path is None:
        raise BuildError(f"`{go}` is not on PATH: Go 1.26 is needed to build the control plane")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with _Exclusive(directory.parent / ".lock", clock=clock):
        if (directory / _COMPLETE).is_file():  # built by another process while we waited
            return Binaries(directory=directory, release=release)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            for name, package in COMPONENTS.items():
                started = clock()
                argv = ["nice", "-n", "19", go_path, "build", *build_flags(release=release)]
                argv += ["-o", str(staging / name), package]
                result = run(
                    argv,
                    cwd=module,
                    env=build_env(base=environ),
                    capture_output=True,
                    text=True,
                    timeout=BUILD_TIMEOUT_SECONDS,
                    check=False,
                )
                if result.returncode != 0:
                    raise BuildError(f"go build {package} failed ({result.returncode}):\n{result.stderr}")
                progress(f"built {name} in {clock() - started:.1f} s")
            (staging / _COMPLETE).write_text(release + "\n")
            shutil.rmtree(directory, ignore_errors=True)
            staging.rename(directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return Binaries(directory=directory, release=release)


class _Exclusive:
    """An exclusive flock on `path`, waited for in bounded, polled steps."""

    def __init__(self, path: Path, *, clock: Callable[[], float]) -> None:
        self._path = path
        self._clock = clock
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
        deadline = self._clock() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if self._clock() > deadline:
                    os.close(self._fd)
                    raise BuildError(f"another build held {self._path} too long") from None
                time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def versions(*, binaries: Binaries, run: Runner = subprocess.run) -> dict[str, str]:
    """Each binary's `--version` line."""
    out: dict[str, str] = {}
    for name, path in binaries.paths.items():
        result = run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False)
        text = (result.stdout or result.stderr).strip()
        out[name] = text.splitlines()[0] if text else f"(exit {result.returncode}, no output)"
    return out
