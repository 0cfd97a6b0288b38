"""The image's recipe: the base's mirror comes from the machine's apt sources, the base's name
changes with its recipe, the build mounts a CA only for pip, and constraints.txt pins every
dependency of pyproject.toml (and the build backend) at versions that satisfy it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.fixtures.image import BUILD_CA_MOUNT, ImageError, apt_mirror, base_tag, build_argv

ROOT = Path(__file__).resolve().parents[2]

DEB822 = """Types: deb
# a snapshot of the archive
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_is_the_deb822_source_of_the_suite_not_the_security_one() -> None:
    assert apt_mirror([DEB822]) == "http://mirror.example/debian"


def test_mirror_is_read_from_a_one_line_sources_list_with_options() -> None:
    text = (
        "# comment\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n"
    )
    assert apt_mirror([text]) == "http://mirror.example/debian"


def test_no_source_for_the_suite_is_an_error_naming_it() -> None:
    with pytest.raises(ImageError, match="bookworm"):
        apt_mirror(["deb http://mirror.example/debian trixie main\n"])


def test_base_tag_changes_with_the_mirror_and_names_python_3_11() -> None:
    one, other = base_tag(mirror="http://a/debian"), base_tag(mirror="http://b/debian")

    assert one.startswith("localhost/rebootd-base:bookworm-python3.11-")
    assert one != other
    assert one == base_tag(mirror="http://a/debian")


def test_build_mounts_the_ca_for_pip_only_when_the_host_has_one() -> None:
    cache = Path("cache")
    plain = build_argv(buildah="buildah", cache=cache, base="localhost/b:1", ca_file=None, version="1.2.3")
    with_ca = build_argv(
        buildah="buildah", cache=cache, base="localhost/b:1", ca_file="/etc/ca.pem", version="1.2.3"
    )

    assert plain[1:3] == ["--storage-driver", "vfs"]
    assert "--isolation" in plain
    assert plain[plain.index("--isolation") + 1] == "chroot"
    assert "PYTHON_IMAGE=localhost/b:1" in plain
    assert not any("PIP_CERT" in arg for arg in plain)
    assert f"/etc/ca.pem:{BUILD_CA_MOUNT}:ro" in with_ca
    assert f"PIP_CERT={BUILD_CA_MOUNT}" in with_ca
    assert "REBOOTD_VERSION=1.2.3" in plain, "the context has no git data: the version is passed in"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not pinned with ==: {line}"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_dependency_and_the_build_backend_at_allowed_versions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [Requirement(r) for r in project["project"]["dependencies"]]
    requirements += [Requirement(r) for r in project["build-system"]["requires"]]
    pins = _pins()

    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside {requirement.specifier}"
        )


def test_containerfile_installs_with_the_constraints() -> None:
    text = (ROOT / "Containerfile").read_text()

    assert "PIP_CONSTRAINT=/src/constraints.txt" in text
    assert "constraints.txt ./" in text


def test_the_image_is_built_as_the_version_passed_in() -> None:
    text = (ROOT / "Containerfile").read_text()

    assert "ARG REBOOTD_VERSION" in text
    assert 'export SETUPTOOLS_SCM_PRETEND_VERSION="$REBOOTD_VERSION"' in text
