"""What settings detection found, as typed values: the candidates it tried with the verdict on
each, what every source gave, and the settings it proposes. The command line prints them, the
console can show them from a worker thread, and ``as_dict`` is the JSON of ``profile detect``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Source(StrEnum):
    """Where a candidate came from, in the order the sources are consulted."""

    AUTOCONFIG = "autoconfig"
    SRV = "srv"
    MX_PRESET = "mx_preset"
    COMMON_NAMES = "common_names"


SOURCE_NAMES = {
    Source.AUTOCONFIG: "autoconfig file",
    Source.SRV: "SRV records",
    Source.MX_PRESET: "MX-based preset",
    Source.COMMON_NAMES: "common host names",
}


class Verdict(StrEnum):
    KEPT = "kept"  # probed: the certificate verified and a login the product can use is offered
    # A provider's preset server that could not be reached from here: proposed all the same (the
    # provider documents it), marked as not probed.
    NOT_PROBED = "not_probed"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Candidate:
    """A server a source proposes. ``origin`` says where exactly (the URL, the SRV name, the MX
    host); ``oauth_provider`` is set for a provider's preset."""

    protocol: str  # imap, pop3, smtp
    host: str
    port: int
    tls: str  # implicit, starttls, none
    source: Source
    origin: str
    oauth_provider: str | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "host": self.host, "port": self.port, "tls": self.tls,
                "source": self.source.value, "origin": self.origin, "oauth_provider": self.oauth_provider}


@dataclass(frozen=True)
class Tried:
    """One candidate and what its probe found: ``reason`` is a sentence saying why it was kept,
    dropped or not probed; ``mechanisms`` are the logins the server offers after TLS."""

    candidate: Candidate
    verdict: Verdict
    reason: str
    address: str | None = None
    tls_detail: str = ""
    mechanisms: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def proposable(self) -> bool:
        return self.verdict in (Verdict.KEPT, Verdict.NOT_PROBED)

    def as_dict(self) -> dict[str, Any]:
        return {**self.candidate.as_dict(), "verdict": self.verdict.value, "reason": self.reason,
                "address": self.address, "tls_detail": self.tls_detail, "mechanisms": list(self.mechanisms),
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class SourceReport:
    """What one source gave: ``outcome`` is a sentence (found, nothing there, not consulted)."""

    source: Source
    outcome: str
    candidates: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source.value, "name": SOURCE_NAMES[self.source], "outcome": self.outcome,
                "candidates": self.candidates}


@dataclass(frozen=True)
class ChosenSettings:
    """The settings proposed for a new profile: the best incoming and outgoing servers, and how
    they log in (``oauth2`` with the provider of a preset, else each mailbox's own password)."""

    incoming: Tried
    outgoing: Tried
    auth: str  # mailbox or oauth2 (core.enums.IncomingAuth / OutgoingAuth)
    oauth_provider: str | None

    @property
    def profile_type(self) -> str:
        return "imap_smtp" if self.incoming.candidate.protocol == "imap" else "pop3_smtp"

    def profile_fields(self) -> dict[str, Any]:
        """The fields of ``profiles.create`` these settings fill."""
        incoming, outgoing = self.incoming.candidate, self.outgoing.candidate
        return {
            "type": self.profile_type,
            "incoming_host": incoming.host, "incoming_port": incoming.port, "incoming_tls": incoming.tls,
            "incoming_auth": self.auth,
            "outgoing_host": outgoing.host, "outgoing_port": outgoing.port, "outgoing_tls": outgoing.tls,
            "outgoing_auth": self.auth,
            "oauth_provider": self.oauth_provider,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.profile_fields(), "incoming_source": self.incoming.candidate.source.value,
                "outgoing_source": self.outgoing.candidate.source.value,
                "incoming_verdict": self.incoming.verdict.value, "outgoing_verdict": self.outgoing.verdict.value}


@dataclass(frozen=True)
class Detection:
    """The whole answer for one address. ``chosen`` is None when no usable incoming and outgoing
    pair was found; ``problem`` then says why in a sentence."""

    email: str
    domain: str
    sources: tuple[SourceReport, ...]
    tried: tuple[Tried, ...]
    chosen: ChosenSettings | None
    warnings: tuple[str, ...] = field(default=())
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email, "domain": self.domain,
            "sources": [report.as_dict() for report in self.sources],
            "candidates": [tried.as_dict() for tried in self.tried],
            "chosen": self.chosen.as_dict() if self.chosen else None,
            "warnings": list(self.warnings),
            "problem": self.problem or None,
        }
