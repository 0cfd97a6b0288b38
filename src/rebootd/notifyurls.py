"""Notification URLs checked against apprise's own list of schemas, at start rather than at send.

Rule: a URL is accepted when its scheme is one apprise lists (`Apprise().details()`: every
plugin's protocols and secure protocols) and that plugin can read it (apprise's own parser: a
shoutrrr layout under a shared scheme, such as discord://token@id, is refused), or, for
`http(s)://`, when an apprise plugin claims it as its native URL (Slack's hook URL, Discord's
webhook URL...). Anything else is refused with the reason; a scheme kured's shoutrrr uses gets the
apprise spelling. apprise is imported only when a
URL is given (its plugins take seconds to load); the schema list is read once per process. A leaf.
"""

from __future__ import annotations

import functools
import logging
import warnings
from types import ModuleType
from urllib.parse import urlsplit

# Schemes shoutrrr and apprise share with different layouts: apprise's.
SHARED_LAYOUTS = {
    "discord": "apprise's layout is discord://webhook_id/webhook_token (shoutrrr's was discord://token@id)",
    "slack": "apprise's layout is slack://tokenA/tokenB/tokenC[/#channel]",
    "gotify": "apprise's layout is gotify://host/token",
    "ntfy": "apprise's layout is ntfy://[user:password@]host/topic",
}
# shoutrrr (kured) schemes apprise does not share, with what to write instead.
SHOUTRRR_HINTS = {
    "teams": "Teams connectors are retired: use a Power Automate workflow, workflows://host:port/workflow/signature",
    "smtp": "e-mail is mailto:// or mailtos://user:pass@host:port?from=a&to=b",
    "rocketchat": "Rocket.Chat is rocket://user:password@host/#channel (rockets:// for https)",
    "generic": "a generic webhook is json://host/path (jsons:// for https)",
    "generic+http": "a generic webhook is json://host/path",
    "generic+https": "a generic webhook is jsons://host/path",
    "googlechat": "Google Chat is gchat://workspace/key/token",
    "hangouts": "Google Chat is gchat://workspace/key/token",
    "mattermost": "Mattermost is mmost://host/token (mmosts:// for https)",
    "zulip": "Zulip is zulip://botname@organization/token",
}


def _apprise() -> ModuleType:
    with warnings.catch_warnings():  # as notify.load_apprise: a plugin imports the deprecated imghdr
        warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)
        import apprise

        apprise.Apprise().details()  # loads every plugin, under the same filter
    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)  # it would log URLs (secrets)
    return apprise


@functools.cache  # the plugin list is fixed for the life of the process
def apprise_schemas() -> frozenset[str]:
    """Every scheme an installed apprise plugin serves."""
    apprise = _apprise()
    schemes: set[str] = set()
    for entry in apprise.Apprise().details()["schemas"]:
        for key in ("protocols", "secure_protocols"):
            schemes.update(s.lower() for s in entry.get(key) or ())
    return frozenset(schemes)


def _native(url: str) -> bool:
    return _apprise().Apprise.instantiate(url, suppress_exceptions=True) is not None


def notify_url_problem(url: str) -> str | None:
    """Why apprise cannot send to `url` (never quoting the URL, which carries secrets), or None."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in {"http", "https"}:
        if _native(url):
            return None
        return (
            f"an {scheme}:// URL that no apprise service claims as its own; for a generic webhook "
            "write json://host/path (jsons:// for https)"
        )
    if scheme in apprise_schemas():
        if _native(url):
            return None
        layout = SHARED_LAYOUTS.get(scheme, "see its page in https://github.com/caronc/apprise/wiki")
        return f"apprise cannot read this {scheme}:// URL (a shoutrrr layout?); {layout}"
    hint = SHOUTRRR_HINTS.get(scheme)
    if hint is not None:
        return f"{scheme}:// is a shoutrrr (kured) scheme that apprise does not know; {hint}"
    return f"{scheme}:// is not an apprise scheme (see https://github.com/caronc/apprise/wiki)"
