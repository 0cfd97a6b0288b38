"""The container image, really built from the Containerfile and run, with no engine and no registry.

Debian's buildah builds it (vfs storage, chroot isolation) on a Debian 12 base with Debian's
Python 3.11 that debootstrap builds here (tests/fixtures/image.py; the base is cached outside the
tree). The image's config is checked (non-root default user, entrypoint and command, the metrics
port), then `rebootd --version` and `rebootd config` run inside it as the image's own user, and
nothing to install or build software with is left in it. Size, layer count and build times are
printed. buildah and debootstrap are real binaries: missing, they fail under CI=true.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from rebootd import __version__
from tests.fixtures.image import TOOLS_HINT, Buildah, Built, build_image, cache_dir, describe
from tests.fixtures.tools import require_binary

# A cold base (debootstrap) plus the image build take minutes on 2 shared cores.
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def buildah() -> Buildah:
    return Buildah(binary=require_binary("buildah", install_hint=TOOLS_HINT), cache=cache_dir(os.environ))


@pytest.fixture(scope="module")
def built(buildah: Buildah) -> Built:
    debootstrap = require_binary("debootstrap", install_hint=TOOLS_HINT)
    image = build_image(buildah=buildah, debootstrap=debootstrap, env=os.environ)
    print(f"\n{describe(image)}")
    return image


@pytest.fixture(scope="module")
def container(buildah: Buildah, built: Built) -> Iterator[str]:
    """One working container of the image for every command run in it (removed at the end)."""
    name = buildah.working_container(built.name)
    try:
        yield name
    finally:
        buildah("rm", name)


def test_image_builds_from_the_containerfile_on_a_locally_built_debian_base(built: Built) -> None:
    assert built.base.startswith("localhost/rebootd-base:bookworm-python3.11-")
    # The base's one layer and the runtime stage's one (buildah --layers=false squashes each stage).
    assert built.layers == 2
    assert 50 * 2**20 < built.size_bytes < 400 * 2**20


def test_image_defaults_to_a_non_root_user_running_rebootd(built: Built) -> None:
    config = built.config

    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["rebootd"]
    assert config["Cmd"] == ["run"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert any(var.startswith("PATH=/opt/rebootd/bin:") for var in config["Env"])


def test_rebootd_version_and_config_run_inside_the_image_as_its_user(
    buildah: Buildah, built: Built, container: str
) -> None:
    user = built.config["User"]

    version = buildah.run_in(container, "rebootd", "--version", user=user)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"rebootd {__version__}"

    config = buildah.run_in(container, "rebootd", "config", "--output", "json", user=user)
    assert config.returncode == 0, config.stderr
    settings = json.loads(config.stdout)
    assert settings["reboot_method"] == "command"
    assert settings["lock_name"] == "rebootd"

    identity = buildah.run_in(container, "id", "-u", user=user)
    assert identity.stdout.strip() == "65532"
    nsenter = buildah.run_in(container, "nsenter", "--version", user=user)  # the command reboot method
    assert nsenter.returncode == 0, nsenter.stderr


def test_image_keeps_no_pip_setuptools_or_build_tools(buildah: Buildah, container: str) -> None:
    probe = (
        "import importlib.util, shutil, json; "
        "print(json.dumps({"
        "'modules': [m for m in ('pip', 'setuptools', 'wheel', 'ensurepip') if importlib.util.find_spec(m)], "
        "'programs': [p for p in ('pip', 'pip3', 'gcc', 'cc', 'make', 'pip3.11') if shutil.which(p)]}))"
    )
    # The daemon's virtualenv and the base's own interpreter (Debian's, or the official image's).
    checked = 0
    for python in ("/opt/rebootd/bin/python", "/usr/bin/python3", "/usr/local/bin/python3"):
        result = buildah.run_in(
            container, "sh", "-c", f'test ! -e {python} || {python} -c "{probe}"', user="0:0"
        )
        assert result.returncode == 0, result.stderr
        if result.stdout.strip():
            assert json.loads(result.stdout) == {"modules": [], "programs": []}, python
            checked += 1
    assert checked == 2
