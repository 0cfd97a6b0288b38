"""Entry points: `rebootd run` (the daemon) and the operator commands.

Rule: parse, validate, then act. Configuration errors exit 2 with one line per bad option and no
traceback, before anything touches the cluster or the node. Every option of `run` is a flag
derived from the settings model (flag wins over its `REBOOTD_*` env var). Heavy modules (the
daemon, the Kubernetes client, the emulator) are imported only by the command that needs them.
The operator commands behave like kubectl's: results on stdout, log lines on stderr and only at
warning or above unless `-v` (info) or `-vv` (debug); the same program is the kubectl plugin
`kubectl-rebootd` (`kubectl rebootd status`). Exit status: 0 done, 1 failed or refused (cluster
unreachable, API error, unlock refused), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rebootd import __version__
from rebootd.settings import InvalidConfig, Settings, field_help, flag_name, load_settings_and_warnings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# Repeated flags append, as kured's do (`--reboot-days mo --reboot-days tu` is Monday and Tuesday).
_REPEATABLE = frozenset(
    {
        "blocking_pod_selector",
        "notify_url",
        "reboot_days",
        "pre_reboot_node_labels",
        "post_reboot_node_labels",
    }
)


SETTINGS_COMMANDS = frozenset({"run", "config", "status", "pause", "resume", "unlock"})


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """argparse, plus kured's own flags for the commands that take settings (`args.kured_flags`)."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        kured_flags, unknown = kured_only_flags(extras)
        if unknown or args.command not in SETTINGS_COMMANDS:
            parser.error(f"unrecognized arguments: {' '.join(unknown or extras)}")
        args.kured_flags = kured_flags
    return args


def kured_only_flags(items: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """kured's flags that rebootd has under another name (`--ds-name`, `--lock-annotation`,
    `--slack-*`), as pflag reads them; and the arguments that are neither rebootd's nor kured's."""
    from rebootd import kured

    found: dict[str, list[str]] = {}
    unknown: list[str] = []
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        name, sep, value = item.removeprefix("--").partition("=")
        if not item.startswith("--") or name not in kured.BY_NAME:
            unknown.append(item)
            continue
        if not sep:
            if i >= len(items) or items[i].startswith("--"):
                unknown.append(item)  # every kured-only flag takes a value
                continue
            value = items[i]
            i += 1
        found.setdefault(name, []).append(value)
    return found, unknown


def _is_bool(name: str) -> bool:
    return Settings.model_fields[name].annotation is bool


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps help text without breaking paths and names at hyphens."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; help shows the env var and the default."""
    group = parser.add_argument_group("options (each also settable through its env var)")
    for env, flag, default, description in field_help():
        name = flag.removeprefix("--").replace("-", "_")
        text = f"{description} [env {env}; default {default}]".replace("%", "%%")
        if _is_bool(name):
            group.add_argument(
                flag, dest=name, nargs="?", const="true", default=None, metavar="BOOL", help=text
            )
        elif name in _REPEATABLE:
            group.add_argument(flag, dest=name, action="append", default=None, metavar="VALUE", help=text)
        else:
            group.add_argument(flag, dest=name, default=None, metavar="VALUE", help=text)


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    return {
        name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None
    }


def _load(
    args: argparse.Namespace, *, environ: Mapping[str, str], stderr: TextIO, require_node: bool
) -> Settings | None:
    try:
        settings, warnings = load_settings_and_warnings(
            environ=environ,
            flags=_flag_values(args),
            require_node=require_node,
            kured_flags=getattr(args, "kured_flags", None),
        )
    except InvalidConfig as exc:
        count = len(exc.problems)
        stderr.write(f"rebootd: invalid configuration ({count} problem{'s' if count != 1 else ''}):\n")
        for problem in exc.problems:
            stderr.write(f"  {problem.render()}\n")
        stderr.flush()
        return None
    for warning in warnings:
        stderr.write(f"rebootd: warning: {warning}\n")
    stderr.flush()
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rebootd",
        description="Kubernetes reboot daemon: coordinated, verified reboots that halt when workloads break.",
    )
    parser.add_argument("--version", action="version", version=f"rebootd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run", help="run the daemon on this node (the DaemonSet's command)", formatter_class=_HelpFormatter
    )
    add_settings_flags(run)

    config = sub.add_parser(
        "config", help="print the effective configuration (secrets redacted)", formatter_class=_HelpFormatter
    )
    config.add_argument("--output", choices=("text", "json", "markdown"), default="text")
    add_settings_flags(config)

    status = sub.add_parser(
        "status",
        help="holders and phases, pause/halt, nodes waiting for a reboot and why, the window",
        formatter_class=_HelpFormatter,
    )
    status.add_argument("-o", "--output", choices=("text", "json", "yaml", "wide"), default="text")
    add_settings_flags(status)
    pause = sub.add_parser(
        "pause",
        help="stop new disruption (a draining node is put back; a rebooted one finishes)",
        formatter_class=_HelpFormatter,
    )
    pause.add_argument("--reason", required=True, help="why, shown by `rebootd status`")
    add_settings_flags(pause)
    resume = sub.add_parser(
        "resume", help="clear the halt shown by status, else lift the pause", formatter_class=_HelpFormatter
    )
    add_settings_flags(resume)
    unlock = sub.add_parser("unlock", help="free a node's slot in the lock", formatter_class=_HelpFormatter)
    unlock.add_argument("node", help="the node whose slot to free")
    unlock.add_argument(
        "--force", action="store_true", help="free it even though rebootd still keeps that node cordoned"
    )
    add_settings_flags(unlock)
    for operator in (status, pause, resume, unlock):
        operator.add_argument(
            "-v", "--verbose", action="count", default=0, help="log at info (-v) or debug (-vv) on stderr"
        )
    migrate = sub.add_parser(
        "migrate",
        help="print the rebootd configuration (kustomize overlay or Helm values) that does what a kured "
        "DaemonSet, live or in a file, or kured Helm values file does",
        formatter_class=_HelpFormatter,
    )
    migrate.add_argument(
        "file", nargs="?", help="kured DaemonSet manifest or kured Helm values (YAML); - reads stdin"
    )
    migrate.add_argument(
        "--from-cluster",
        action="store_true",
        help="read the live kured DaemonSet instead (read-only; kubectl's kubeconfig rules)",
    )
    migrate.add_argument("--namespace", default="kube-system", help="namespace of kured's DaemonSet")
    migrate.add_argument("--name", default="kured", help="name of kured's DaemonSet")
    migrate.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: REBOOTD_KUBECONFIG, in-cluster, $KUBECONFIG, ~/.kube/config)",
    )
    migrate.add_argument(
        "--output",
        choices=("kustomize", "helm"),
        default="kustomize",
        help="a kustomize overlay on rebootd's base, or values for rebootd's Helm chart",
    )
    sub.add_parser(
        "simulate",
        help="run a simulated cluster rollout and report whether it was safe (`rebootd simulate --help`)",
        add_help=False,
    )
    sub.add_parser(
        "emulator", help="serve the Kubernetes API emulator (see `rebootd emulator --help`)", add_help=False
    )
    return parser


def render_markdown() -> str:
    """The configuration reference table (defaults, not the current environment)."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `rebootd config --output markdown`; tests fail when this file is stale. -->",
        "",
        "Every option is an environment variable of the daemon and a flag of `rebootd run`; the flag",
        "wins. Durations take Go syntax (`90s`, `1h30m`, `500ms`) or bare seconds. Lists are",
        "comma-separated, except `REBOOTD_BLOCKING_POD_SELECTOR` (selectors separated by `;`, since a",
        "comma inside a selector means AND; the flag is repeatable) and `REBOOTD_NOTIFY_URL` (URLs",
        "separated by spaces).",
        "",
        "| Environment variable | Flag | Default | Description |",
        "|---|---|---|---|",
    ]
    for env, flag, default, description in field_help():
        cell, text = (part.replace("|", r"\|") for part in (default, description))
        lines.append(f"| `{env}` | `{flag}` | `{cell}` | {text} |")
    return "\n".join(lines) + "\n"


def _print_config(settings: Settings, *, output: str, stdout: TextIO) -> None:
    if output == "markdown":
        stdout.write(render_markdown())
        return
    data = settings.redacted()
    if output == "json":
        stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        return
    width = max(len(flag_name(k)) for k in data)
    for key, value in data.items():
        shown = ",".join(map(str, value)) if isinstance(value, list) else ("" if value is None else value)
        stdout.write(f"{flag_name(key).removeprefix('--'):<{width}}  {shown}\n")


def _run_daemon(settings: Settings) -> int:
    from rebootd.daemon import Daemon
    from rebootd.logs import configure

    configure(fmt=settings.log_format, level=settings.log_level)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await Daemon(settings=settings).run(stop=stop)

    return asyncio.run(main())


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr

    if argv and argv[0] == "simulate":
        from rebootd.sim.cli import simulate_command

        return simulate_command(argv[1:])
    if argv and argv[0] == "emulator":
        from rebootd.sim.cli import emulator_command

        return emulator_command(argv[1:])

    parser = build_parser()
    try:
        with contextlib.redirect_stderr(err):  # argparse writes usage errors to sys.stderr
            args = parse_arguments(parser, argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)

    if args.command == "config":
        settings = _load(args, environ=environ, stderr=err, require_node=False)
        if settings is None:
            return EXIT_USAGE
        _print_config(settings, output=args.output, stdout=out)
        return EXIT_OK
    if args.command == "migrate":
        return _migrate(args, environ=environ, stdout=out, stderr=err)
    if args.command == "run":
        settings = _load(args, environ=environ, stderr=err, require_node=True)
        if settings is None:
            return EXIT_USAGE
        return _run_daemon(settings)
    if args.command in {"status", "pause", "resume", "unlock"}:
        settings = _load(args, environ=environ, stderr=err, require_node=False)
        if settings is None:
            return EXIT_USAGE
        return asyncio.run(_operator(args, settings=settings, stdout=out, stderr=err))
    err.write(f"rebootd: unknown command {args.command}\n")
    return EXIT_USAGE


def _migrate(args: argparse.Namespace, *, environ: Mapping[str, str], stdout: TextIO, stderr: TextIO) -> int:
    """`rebootd migrate`: a file, stdin or the live DaemonSet, rendered as an overlay or values."""
    from rebootd.migrate import MigrateError, from_daemonset, read_install, render_helm_values, render_overlay

    if (args.file is None) == (not args.from_cluster):
        stderr.write("rebootd migrate: give a FILE (or - for stdin), or --from-cluster, not both\n")
        return EXIT_USAGE
    try:
        if args.from_cluster:
            kubeconfig = args.kubeconfig or environ.get("REBOOTD_KUBECONFIG") or None
            found = asyncio.run(_live_daemonset(args, kubeconfig=kubeconfig, stderr=stderr))
            if found is None:
                return EXIT_FAILURE
            install = from_daemonset(found)
            install.source = f"live DaemonSet {args.namespace}/{args.name}"
            for warning in kured_lock_holders(found, install.flags):
                stderr.write(f"rebootd migrate: warning: {warning}\n")
        else:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
            install = read_install(text)
        render = render_helm_values if args.output == "helm" else render_overlay
        stdout.write(render(install))
    except (OSError, MigrateError) as exc:
        stderr.write(f"rebootd migrate: {exc}\n")
        return EXIT_FAILURE
    for note in install.notes:
        stderr.write(f"rebootd migrate: note: {note}\n")
    return EXIT_OK


async def _live_daemonset(
    args: argparse.Namespace, *, kubeconfig: str | None, stderr: TextIO
) -> dict[str, Any] | None:
    """kured's DaemonSet as the API server has it: one GET, nothing written. The operator
    commands' kubeconfig rules: --kubeconfig (or REBOOTD_KUBECONFIG), in-cluster, $KUBECONFIG."""
    from rebootd.kube import Kube, KubeError, NotFound

    try:
        kube = await Kube.connect(
            kubeconfig=Path(kubeconfig) if kubeconfig else None, user_agent="rebootd-cli"
        )
    except KubeError as exc:
        stderr.write(f"rebootd migrate: cannot reach the cluster: {exc}\n")
        return None
    try:
        return await kube.get_daemonset(namespace=args.namespace, name=args.name)
    except NotFound:
        stderr.write(
            f"rebootd migrate: no DaemonSet {args.namespace}/{args.name} "
            "(give --namespace and --name of kured's)\n"
        )
        return None
    except KubeError as exc:
        stderr.write(f"rebootd migrate: cannot read DaemonSet {args.namespace}/{args.name}: {exc}\n")
        return None
    finally:
        await kube.close()


def kured_lock_holders(daemonset: Mapping[str, Any], flags: Mapping[str, Sequence[str]]) -> list[str]:
    """A warning per node that holds kured's lock on this DaemonSet (it may be mid-reboot)."""
    annotation = (flags.get("lock-annotation") or ["weave.works/kured-node-lock"])[-1]
    raw = ((daemonset.get("metadata") or {}).get("annotations") or {}).get(annotation)
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except ValueError:
        return [f"kured's lock annotation {annotation} is not JSON ({raw[:100]!r}): check it by hand"]
    locks = data.get("locks") if isinstance(data, dict) and "locks" in data else [data]
    holders = sorted(
        str(lock.get("nodeID")) for lock in locks or [] if isinstance(lock, dict) and lock.get("nodeID")
    )
    return [
        f"kured's lock ({annotation}) is held by node {node}: it may be rebooting; wait until kured releases "
        "it before deleting kured's DaemonSet"
        for node in holders
    ]


async def _operator(args: argparse.Namespace, *, settings: Settings, stdout: TextIO, stderr: TextIO) -> int:
    """The operator commands: same kubeconfig rules as kubectl (flag, in-cluster, $KUBECONFIG)."""
    # Imported here: the Kubernetes client loads only for the commands that talk to the cluster.
    from rebootd import admin
    from rebootd.clock import SystemClock
    from rebootd.kube import Kube, KubeError
    from rebootd.logs import configure

    configure(level=("warning", "info", "debug")[min(args.verbose, 2)], stream=stderr)
    clock = SystemClock()
    try:
        kube = await Kube.connect(kubeconfig=settings.kubeconfig, user_agent="rebootd-cli")
    except KubeError as exc:
        stderr.write(f"rebootd: cannot reach the cluster: {exc}\n")
        return EXIT_FAILURE
    lock = admin.operator_lock(
        kube=kube, namespace=settings.lock_namespace, name=settings.lock_name, clock=clock
    )
    try:
        if args.command == "status":
            report = await admin.status(
                lock=lock,
                window=settings.window,
                now=clock.now(),
                concurrency=settings.concurrency,
                zone_concurrency=settings.zone_concurrency,
                zone_label=settings.zone_label,
            )
            if args.output == "json":
                stdout.write(json.dumps(report, indent=2) + "\n")
            elif args.output == "yaml":
                import yaml

                stdout.write(yaml.safe_dump(report, sort_keys=False))
            else:
                stdout.write(admin.render_status(report, wide=args.output == "wide") + "\n")
            return EXIT_OK
        if args.command == "pause":
            await admin.pause(lock=lock, reason=args.reason, clock=clock)
            stdout.write(f"paused: {args.reason}\n")
            return EXIT_OK
        try:
            if args.command == "resume":
                before = await lock.refresh()
                if before.halted:
                    await admin.resume(lock=lock, halt=before.halted, pause=None)
                    halted = before.halted
                    stdout.write(f"cleared the halt at node {halted.get('node')}: {halted.get('reason')}\n")
                    if before.paused:
                        stdout.write("still paused: run `rebootd resume` again to lift the pause\n")
                elif before.paused:
                    await admin.resume(lock=lock, halt=None, pause=before.paused)
                    stdout.write(
                        f"lifted the pause by {before.paused.get('by')}: {before.paused.get('reason')}\n"
                    )
                else:
                    stdout.write("nothing to resume\n")
                return EXIT_OK
            freed = await admin.unlock(lock=lock, node=args.node, force=args.force)
        except admin.Refused as exc:
            stderr.write(f"rebootd: refused: {exc}\n")
            return EXIT_FAILURE
        if not freed:
            stderr.write(
                f"rebootd: {args.node} holds no slot in {settings.lock_namespace}/{settings.lock_name}\n"
            )
            return EXIT_FAILURE
        stdout.write(f"freed the slot of {args.node}\n")
        return EXIT_OK
    except KubeError as exc:
        stderr.write(f"rebootd: {args.command} failed: {exc}\n")
        return EXIT_FAILURE
    finally:
        await kube.close()


def entry_point() -> None:
    """Console script: exit with main()'s status; a closed stdout pipe (`| head`) is not an error."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_OK
    raise SystemExit(code)
