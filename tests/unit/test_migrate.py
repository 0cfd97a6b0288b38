"""`rebootd migrate` on kured installations (fixtures in the shape of kured's release manifest and
Helm chart values): every flag translated, changed meanings commented, untranslatable ones refused;
the overlay's settings load in `rebootd config` and mean what kured meant."""

from __future__ import annotations

import io
import re
from pathlib import Path

import yaml

from rebootd.cli import EXIT_FAILURE, EXIT_OK, main
from rebootd.settings import load_settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kured"


def migrate(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(["migrate", str(path)], environ={}, stdout=out, stderr=err), out.getvalue(), err.getvalue()


def literals(overlay: str) -> dict[str, str]:
    doc = yaml.safe_load(overlay)
    pairs = [item.split("=", 1) for item in doc["configMapGenerator"][0]["literals"]]
    return dict(pairs)


def test_daemonset_flags_translate_to_settings_with_kureds_meaning() -> None:
    code, overlay, err = migrate(FIXTURES / "kured-ds.yaml")
    assert code == EXIT_OK, err
    env = literals(overlay)
    settings = load_settings(environ=env)
    assert settings.reboot_days == frozenset({5, 6})  # repeated --reboot-days appended
    assert settings.blocking_pod_selector == ("runtime=long,cost=expensive", "name=temperamental")
    assert settings.lock_name == "kured-pool-a-pool-a-lock"  # --ds-name + --lock-annotation: its own lock
    assert settings.lock_ttl == 300  # --lock-ttl=0
    assert settings.period == 1800  # KURED_PERIOD overrides the flag, as in kured
    assert settings.drain_timeout == 600  # "--drain-timeout 10m" as two words
    assert settings.alert_firing_only is True
    assert str(settings.reboot_sentinel) == "/host/var/run/reboot-required"
    assert "never expire" in overlay
    assert "DaemonSet kured-pool-a" in overlay
    secret = yaml.safe_load(overlay)["secretGenerator"][0]["literals"][0]
    # kured v1.23 carries neither --slack-username nor --slack-channel into its slack:// URL
    assert secret == "url=slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
    assert "kured v1.23 ignored --slack-channel/--slack-username" in overlay


def test_helm_values_translate_and_keep_the_secret_reference() -> None:
    code, overlay, err = migrate(FIXTURES / "helm-values.yaml")
    assert code == EXIT_OK, err
    settings = load_settings(environ=literals(overlay))
    assert settings.reboot_days == frozenset(range(5))
    assert settings.force_reboot is True
    assert settings.pre_reboot_node_labels == ("kured=rebooting",)
    assert settings.alert_filter_regexp is None  # "" in the chart's values renders no flag
    assert "REBOOTD_PDB_PREFLIGHT=false" in overlay  # the comment on --force-reboot
    assert "name: kured-notify" in overlay


def test_untranslatable_flag_is_an_error_naming_it(tmp_path: Path) -> None:
    manifest = (FIXTURES / "kured-ds.yaml").read_text().replace("--concurrency=2", "--no-such-flag=1")
    bad = tmp_path / "ds.yaml"
    bad.write_text(manifest)
    code, out, err = migrate(bad)
    assert code == EXIT_FAILURE
    assert out == ""
    assert re.search(r"--no-such-flag: not a kured flag", err)


def uncommented(manifest: str) -> str:
    """kured's release manifest with every commented-out flag line switched on, as a user would."""
    return re.sub(r"^#(\s+- --)", r"\1", manifest, flags=re.MULTILINE)


def test_kureds_published_manifest_translates_to_rebootds_defaults(tmp_path: Path) -> None:
    code, overlay, err = migrate(FIXTURES / "kured-ds-1.23.0.yaml")
    assert code == EXIT_OK, err
    assert literals(overlay) == {
        "REBOOTD_REBOOT_SENTINEL": "/host/var/run/reboot-required",
        "REBOOTD_KURED_COMPAT": "true",  # kured's metric names keep its alerts and dashboards working
    }
    out = io.StringIO()
    path = FIXTURES / "kured-ds-1.23.0.yaml"
    assert main(["migrate", str(path), "--output", "helm"], environ={}, stdout=out, stderr=io.StringIO()) == 0
    values = yaml.safe_load(out.getvalue())
    assert values["configuration"] == {"rebootSentinel": "/host/var/run/reboot-required"}
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in values["tolerations"]


def test_kureds_manifest_with_every_flag_switched_on_names_its_placeholders(tmp_path: Path) -> None:
    """The commented-out lines of kured's manifest hold placeholders (`...`) and `""` values: the
    placeholders are errors naming them; without them every flag translates, each `""` noted."""
    manifest = uncommented((FIXTURES / "kured-ds-1.23.0.yaml").read_text())
    assert manifest.count("- --") == 41  # --reboot-sentinel and the 40 commented out
    path = tmp_path / "all.yaml"
    path.write_text(manifest)
    code, out, err = migrate(path)
    assert code == EXIT_FAILURE
    assert out == ""
    assert "--slack-hook-url=https://hooks.slack.com/...: not a Slack webhook URL" in err
    lines = [
        line for line in manifest.splitlines() if "slack-hook-url" not in line and "selector=..." not in line
    ]
    path.write_text("\n".join(lines))
    code, overlay, err = migrate(path)
    assert code == EXIT_OK, err
    settings = load_settings(environ=literals(overlay))
    assert settings.blocking_pod_selector == ("runtime=long,cost=expensive", "name=temperamental")
    assert settings.reboot_days == frozenset(range(7))
    assert settings.lock_name == "rebootd"  # kured's default lock: rebootd's default Lease
    assert settings.drain_timeout == 0  # kured's explicit 0: wait forever
    assert settings.lock_release_delay == 1800
    assert settings.prefer_no_schedule_taint == ""
    assert err.count("kured read the two quote characters") == 5


def test_kureds_chart_default_values_translate(tmp_path: Path) -> None:
    code, overlay, err = migrate(FIXTURES / "chart-values-6.1.0.yaml")
    assert code == EXIT_OK, err
    settings = load_settings(environ=literals(overlay))
    assert settings.concurrency == 1
    assert settings.reboot_days == frozenset(range(7))
    assert str(settings.reboot_sentinel) == "/host/var/run/reboot-required"
    assert settings.alert_filter_regexp is None
    assert "not carried" not in err
