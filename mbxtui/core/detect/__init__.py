"""Settings detection: from an email address to the servers of a new profile, every one probed
before it is proposed (``profile detect``; the console can call ``detect_settings`` from a worker
thread and show the typed ``Detection`` it returns)."""

from mbxtui.core.detect.lookup import DnsUnavailable
from mbxtui.core.detect.model import ChosenSettings, Detection, Source, SourceReport, Tried, Verdict
from mbxtui.core.detect.service import NothingUsable, create_profile, detect_settings, refuse_existing_name

__all__ = [
    "ChosenSettings",
    "Detection",
    "DnsUnavailable",
    "NothingUsable",
    "Source",
    "SourceReport",
    "Tried",
    "Verdict",
    "create_profile",
    "detect_settings",
    "refuse_existing_name",
]
