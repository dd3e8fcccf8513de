"""Names a person can read for the devices page, from the user agent each
session recorded at login: "Chrome on Linux", "Mobile Safari on iOS".

The parsing is ua-parser's (https://github.com/ua-parser), whose rules are
maintained as browsers change; the raw string stays available as a tooltip.
"""

from __future__ import annotations

import dataclasses

from ua_parser import OS
from ua_parser import Device as ParsedDevice
from ua_parser import UserAgent
from ua_parser import parse

#: Device names of ua-parser's that tell a person nothing: a crawler, and
#: the "K" of the reduced user agent Chrome sends on Android (besides the
#: "Generic Smartphone" kind).
_VAGUE_DEVICES = {"Spider", "K"}


@dataclasses.dataclass(frozen=True)
class Device:
    """How a session's device is shown."""

    #: "Chrome on Linux", "Firefox", or "Unknown browser".
    name: str
    #: The model when ua-parser knows one worth showing ("iPhone",
    #: "Pixel 8"), else "".
    model: str
    #: The user agent as the browser sent it.
    user_agent: str


def describe_device(user_agent: str | None) -> Device:
    """Describe the device behind a user agent string; an empty or unknown
    one is an "Unknown browser".
    """
    user_agent = (user_agent or "").strip()
    result = parse(user_agent) if user_agent else None
    browser = _known(result.user_agent if result else None)
    system = _known(result.os if result else None)
    model = _known(result.device if result else None)

    if system and browser:
        name = f"{browser} on {system}"
    elif browser:
        name = browser
    elif system:
        name = f"Unknown browser on {system}"
    else:
        name = "Unknown browser"

    # "Mac" says no more than "Mac OS X" does.
    if (
        model in _VAGUE_DEVICES
        or model.startswith("Generic")
        or model.lower() in name.lower()
    ):
        model = ""

    return Device(name=name, model=model, user_agent=user_agent)


def _known(part: UserAgent | OS | ParsedDevice | None) -> str:
    # ua-parser answers None, or in places "Other", for what it cannot tell.
    family = part.family if part is not None else ""
    return "" if family == "Other" else family
