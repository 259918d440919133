"""Settings detection (issue 13): from an email address to a proposed profile.

Sources, consulted in this order until both an incoming and an outgoing server are found: the
autoconfig file, SRV records (RFC 6186, RFC 8314), a provider's preset chosen by the domain's MX
hosts, then common host names. Every candidate is probed before it is proposed
(``probing``). Nothing is saved by ``detect_settings``; ``create_profile`` saves what a person
confirmed, through the profile service."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mbxtui.core import validation
from mbxtui.core.detect import autoconfig, probing
from mbxtui.core.detect.lookup import Lookup, parse_dns_server
from mbxtui.core.detect.model import (
    SOURCE_NAMES, Candidate, ChosenSettings, Detection, Source, SourceReport, Tried, Verdict,
)
from mbxtui.core.detect.presets import COMMON_NAMES, PRESETS, SRV_SERVICES, TOKEN_MECHANISMS, Server, preset_for
from mbxtui.core.errors import Conflict, InvalidInput, MbxError, NotFound
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import profiles
from mbxtui.core.services.profiles import ProfileRecord

DEFAULT_TIMEOUT = 10
TIMEOUT_RANGE = (1, 120)
_MOST_CANDIDATES_PER_SOURCE = 16  # a file or a zone naming more is cut here: each costs a probe
_PARALLEL_PROBES = 8


class NothingUsable(MbxError):
    """Detection found no usable pair of servers, so there is nothing to create."""


def detect_settings(actor: Actor, email: str, *, dns_server: str | None = None, ca_file: str | None = None,
                    timeout: int = DEFAULT_TIMEOUT, reach_ports: Mapping[int, int] | None = None,
                    on_source: Callable[[Source], None] | None = None) -> Detection:
    """Find and probe the servers for ``email``'s domain; nothing is saved. ``dns_server``
    (``HOST[:PORT]``) is asked for every name instead of the system's resolver; ``timeout`` bounds
    each DNS question, each HTTP fetch and each probe. ``reach_ports`` maps a standard port (443,
    993...) to the port it is reached at on the address found: only the tests, whose servers
    listen on free ports, need it. ``on_source`` is called as each source is consulted (a console
    worker shows it as progress). Raises ``DnsUnavailable`` when the DNS server does not answer."""
    require(actor, Permission.CONFIGURE)
    address = validation.email("email", email)
    domain = _dns_domain(address)
    seconds = validation.integer("timeout", timeout, *TIMEOUT_RANGE, "seconds")
    server = parse_dns_server(dns_server) if dns_server else None
    ca = validation.ca_file("ca-file", ca_file) if ca_file else None
    return _Detector(address, domain, Lookup(server, seconds), ca, seconds, reach_ports or {}).run(on_source)


def create_profile(actor: Actor, name: str, detection: Detection, *, ca_file: str | None = None,
                   oauth_tenant: str | None = None, oauth_client_id: str | None = None) -> ProfileRecord:
    """Create the profile ``name`` from the settings ``detection`` proposes (a preset's OAuth
    provider included; Microsoft 365 also needs the app's client id, its tenant defaulting to the
    address's domain)."""
    require(actor, Permission.CONFIGURE)
    if detection.chosen is None:
        raise NothingUsable(f"no profile was created: {detection.problem} (without --create, detection "
                            "shows what each source gave and why each candidate was dropped)")
    fields: dict[str, Any] = detection.chosen.profile_fields()
    provider = fields["oauth_provider"]
    if provider == "microsoft365":
        fields["oauth_tenant"] = oauth_tenant or detection.domain
    elif oauth_tenant:
        raise InvalidInput("--oauth-tenant", "is for a Microsoft 365 profile only, and these settings are not one")
    if oauth_client_id:
        if provider is None:
            raise InvalidInput("--oauth-client-id", "is for a profile whose tokens come from an OAuth provider, "
                                                    "and these settings log in with each mailbox's password")
        fields["oauth_client_id"] = oauth_client_id
    return profiles.create(actor, name=name, ca_file=ca_file, **fields)


def refuse_existing_name(actor: Actor, name: str) -> None:
    """Refuse at once a profile name that is taken, before any probing (the profile service
    checks again when it creates it)."""
    require(actor, Permission.CONFIGURE)
    try:
        profiles.get(name)
    except NotFound:
        return
    raise Conflict(f"a profile named {name!r} already exists: choose another name with --create, "
                   "nothing was probed")


def _dns_domain(address: str) -> str:
    domain = address.rpartition("@")[2]
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidInput("email", f"the domain {domain!r} cannot be written for DNS") from None


class _Detector:
    def __init__(self, email: str, domain: str, lookup: Lookup, ca_file: str | None, timeout: float,
                 reach_ports: Mapping[int, int]) -> None:
        self.email, self.domain, self.lookup = email, domain, lookup
        self.ca_file, self.timeout, self.reach_ports = ca_file, timeout, reach_ports
        self.reports: list[SourceReport] = []
        self.tried: list[Tried] = []
        self.warnings: list[str] = []

    def run(self, on_source: Callable[[Source], None] | None) -> Detection:
        steps: list[tuple[Source, Callable[[], tuple[list[Candidate], str]]]] = [
            (Source.AUTOCONFIG, self._autoconfig), (Source.SRV, self._srv),
            (Source.MX_PRESET, self._mx_preset), (Source.COMMON_NAMES, self._common_names),
        ]
        for index, (source, gather) in enumerate(steps):
            if on_source is not None:
                on_source(source)
            candidates, outcome = gather()
            candidates = candidates[:_MOST_CANDIDATES_PER_SOURCE]
            self.reports.append(SourceReport(source, outcome, len(candidates)))
            self.tried.extend(self._probe_all(candidates))
            if self._found_both():
                done = SOURCE_NAMES[source]
                self.reports.extend(SourceReport(later, f"not consulted: settings were complete after the {done}")
                                    for later, _ in steps[index + 1:])
                break
        chosen = self._choose()
        problem = "" if chosen is not None else self._problem()
        return Detection(self.email, self.domain, tuple(self.reports), tuple(self.tried), chosen,
                         tuple(self.warnings), problem)

    # -- the sources --

    def _autoconfig(self) -> tuple[list[Candidate], str]:
        asked = autoconfig.fetch_all(self.domain, self.lookup, ca_file=self.ca_file, timeout=self.timeout,
                                     reach_ports=self.reach_ports)
        found = asked[-1] if asked[-1].document is not None else None
        misses = "; ".join(f"{fetched.url}: {fetched.problem}" for fetched in asked if fetched.document is None)
        if found is None:
            return [], f"no file ({misses})"
        try:
            candidates = autoconfig.parse(found.document or b"", self.email, found.url)
        except autoconfig.NotAConfig as exc:
            return [], f"{found.url} was ignored: {exc}"
        if found.plain_http:
            self.warnings.append(f"the autoconfig file came over plain HTTP from {found.url}: anyone on the way "
                                 "could have changed it; check the servers proposed before using them")
        before = f" (before it: {misses})" if misses else ""
        return candidates, f"{found.url} names {len(candidates)} server(s){before}"

    def _srv(self) -> tuple[list[Candidate], str]:
        candidates: list[Candidate] = []
        said: list[str] = []
        for service, protocol, tls in SRV_SERVICES:
            name = f"{service}.{self.domain}"
            records = self.lookup.srv(name)
            if any(record.target == "." for record in records):
                said.append(f"{name}: not offered (target .)")
                continue
            for record in records:
                candidates.append(Candidate(protocol, record.target.lower(), record.port, tls, Source.SRV,
                                            f"{name} priority {record.priority} weight {record.weight}"))
            if records:
                said.append(f"{name}: {len(records)} record(s)")
        return candidates, "; ".join(said) if said else "no SRV records"

    def _mx_preset(self) -> tuple[list[Candidate], str]:
        hosts = self.lookup.mx(self.domain)
        if not hosts:
            return [], f"{self.domain} has no MX records"
        for host in hosts:
            preset = preset_for(host)
            if preset is not None:
                return ([_preset_candidate(server, preset.oauth_provider.value, f"MX {host} ({preset.name})")
                         for server in preset.servers],
                        f"MX {host} is {preset.name}'s: its servers, with OAuth2 provider {preset.oauth_provider}")
        return [], f"MX {', '.join(hosts)}: no known provider ({', '.join(p.name for p in PRESETS)})"

    def _common_names(self) -> tuple[list[Candidate], str]:
        candidates, named = [], {}
        for protocol, prefix, port, tls in COMMON_NAMES:
            host = f"{prefix}.{self.domain}"
            if host not in named:
                named[host] = bool(self.lookup.addresses(host))
            if named[host]:
                candidates.append(Candidate(protocol, host, port, tls, Source.COMMON_NAMES, f"{host} has an address"))
        with_address = [host for host, found in named.items() if found]
        if not with_address:
            return [], f"none of {', '.join(named)} has an address in DNS"
        return candidates, f"{', '.join(with_address)} have an address"

    # -- probing and choosing --

    def _probe_all(self, candidates: list[Candidate]) -> list[Tried]:
        if not candidates:
            return []

        def probe(candidate: Candidate) -> Tried:
            return probing.probe(candidate, self.lookup, ca_file=self.ca_file, timeout=self.timeout,
                                 reach_ports=self.reach_ports)

        with ThreadPoolExecutor(max_workers=min(_PARALLEL_PROBES, len(candidates)),
                                thread_name_prefix="detect-probe") as pool:
            return list(pool.map(probe, candidates))

    def _found_both(self) -> bool:
        return self._best(("imap", "pop3")) is not None and self._best(("smtp",)) is not None

    def _best(self, protocols: tuple[str, ...]) -> Tried | None:
        """The first kept server in source order (IMAP before POP3 within a source), else the
        first preset server not probed."""
        for verdict in (Verdict.KEPT, Verdict.NOT_PROBED):
            for source in Source:
                for protocol in protocols:
                    for tried in self.tried:
                        if (tried.verdict == verdict and tried.candidate.source == source
                                and tried.candidate.protocol == protocol):
                            return tried
        return None

    def _choose(self) -> ChosenSettings | None:
        incoming, outgoing = self._best(("imap", "pop3")), self._best(("smtp",))
        if incoming is None or outgoing is None:
            return None
        provider = incoming.candidate.oauth_provider or outgoing.candidate.oauth_provider
        token_only = all(tried.mechanisms and set(tried.mechanisms) <= TOKEN_MECHANISMS
                         for tried in (incoming, outgoing))
        auth = "oauth2" if provider or token_only else "mailbox"
        return ChosenSettings(incoming, outgoing, auth, provider)

    def _problem(self) -> str:
        missing = [role for role, protocols in (("incoming (IMAP or POP3)", ("imap", "pop3")),
                                                ("outgoing (SMTP)", ("smtp",)))
                   if self._best(protocols) is None]
        tried = f"{len(self.tried)} candidate(s) tried" if self.tried else "no source named a server"
        return (f"no usable {' or '.join(missing)} server was found for {self.domain} ({tried}): check the "
                "address's domain, give the DNS server that knows it with --dns-server, or create the profile "
                "by hand with profile add")


def _preset_candidate(server: Server, provider: str, origin: str) -> Candidate:
    return Candidate(server.protocol, server.host, server.port, server.tls, Source.MX_PRESET, origin, provider)
