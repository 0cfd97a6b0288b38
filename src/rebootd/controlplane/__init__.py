"""The real Kubernetes control plane for tests and the simulator: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, built from the Go wrapper module in the repository's
`controlplane/` folder and started on free loopback ports.

Rule: `build` turns the pinned go.mod/go.sum into four binaries cached outside the git tree (keyed
by a hash of the module files and the build recipe); `config` is pure (flags, token file, audit
policy, kubeconfigs: data in, data out); `launch` owns the processes and is the only I/O with them:
`running_control_plane` starts the four, waits until they serve, and stops every one of them by
process group on the way out, whatever happened inside. Nothing here imports the daemon, the
emulator or the simulator.
"""

from rebootd.controlplane.build import (
    COMPONENTS,
    RELEASE,
    Binaries,
    BuildError,
    build_binaries,
    find_module_dir,
    locate_binaries,
)
from rebootd.controlplane.config import User
from rebootd.controlplane.launch import ControlPlane, ControlPlaneError, running_control_plane

__all__ = [
    "COMPONENTS",
    "RELEASE",
    "Binaries",
    "BuildError",
    "ControlPlane",
    "ControlPlaneError",
    "User",
    "build_binaries",
    "find_module_dir",
    "locate_binaries",
    "running_control_plane",
]
