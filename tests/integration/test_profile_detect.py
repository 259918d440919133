"""Settings detection (issue 13) against a local DNS server (tests/lab/dns_server.py), a local
autoconfig web server (tests/lab/autoconfig_server.py) and the lab's real Dovecot and SMTP servers
as the probed servers. Every name lives under certs.DETECTION_DOMAIN, which the lab's certificate
covers, and resolves to 127.0.0.1 through the local DNS server only: nothing leaves this machine."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from mbxtui.core.detect.lookup import Lookup, parse_dns_server
from mbxtui.core.detect import Detection, NothingUsable, Source, Verdict, create_profile, detect_settings
from mbxtui.core.errors import InvalidInput
from mbxtui.core.models import Profile
from mbxtui.core.permissions import SYSTEM
from tests.lab import MailLab
from tests.lab.autoconfig_server import CONFIG_PATH, WELL_KNOWN_PATH, AutoconfigServer, config_xml
from tests.lab.certs import DETECTION_DOMAIN
from tests.lab.dns_server import LabDnsServer

pytestmark = pytest.mark.servers

DOMAIN = DETECTION_DOMAIN
EMAIL = f"alice@{DOMAIN}"
AUTOCONFIG_HOST = f"autoconfig.{DOMAIN}"


def standard_ports(lab: MailLab, **more: int) -> dict[int, int]:
    """Where the standard ports are reached: the lab's servers for the mail ports, and nothing
    listening for the web ports unless the test serves them."""
    ports = lab.ports
    return {993: ports["imaps"], 143: ports["imap"], 995: ports["pop3s"], 110: ports["pop3"],
            465: ports["smtps"], 587: ports["smtp"], 443: ports["refused"], 80: ports["refused"],
            **{int(key.removeprefix("port_")): value for key, value in more.items()}}


def detect(lab: MailLab, dns: LabDnsServer, reach: dict[int, int] | None = None, **options: object) -> Detection:
    options.setdefault("ca_file", lab.ca_file)
    options.setdefault("timeout", 3)
    return detect_settings(SYSTEM, EMAIL, dns_server=dns.address, reach_ports=reach or standard_ports(lab),
                           **options)


def a(*hosts: str) -> str:
    return "".join(f"{host}. 60 IN A 127.0.0.1\n" for host in hosts)


def srv(service: str, priority: int, weight: int, port: int, target: str) -> str:
    target = "." if target == "." else f"{target}."
    return f"{service}.{DOMAIN}. 60 IN SRV {priority} {weight} {port} {target}\n"


def chosen_servers(found: Detection) -> tuple[tuple[str, int, str], tuple[str, int, str]]:
    assert found.chosen is not None, found.problem
    incoming, outgoing = found.chosen.incoming.candidate, found.chosen.outgoing.candidate
    return (incoming.host, incoming.port, incoming.tls), (outgoing.host, outgoing.port, outgoing.tls)


def outcome(found: Detection, source: Source) -> str:
    return next(report.outcome for report in found.sources if report.source == source)


@pytest.fixture
def zone_servers(mail_lab: MailLab) -> str:
    """SRV records naming the lab's IMAPS and submission ports, under this domain."""
    ports = mail_lab.ports
    return (srv("_imaps._tcp", 0, 1, ports["imaps"], f"imap.{DOMAIN}")
            + srv("_submission._tcp", 0, 1, ports["smtp"], f"smtp.{DOMAIN}")
            + a(f"imap.{DOMAIN}", f"smtp.{DOMAIN}"))


# -- each source winning --

def test_the_autoconfig_file_wins_over_srv_records(mail_lab, zone_servers):
    ports = mail_lab.ports
    xml = config_xml(DOMAIN, [("imap", f"mail.{DOMAIN}", ports["imap"], "STARTTLS"),
                              ("smtp", f"mail.{DOMAIN}", ports["smtps"], "SSL")])
    with LabDnsServer(zone_servers + a(AUTOCONFIG_HOST, f"mail.{DOMAIN}")) as dns, \
            AutoconfigServer({(AUTOCONFIG_HOST, CONFIG_PATH): xml}, mail_lab) as web:
        found = detect(mail_lab, dns, standard_ports(mail_lab, port_443=web.port))
    assert chosen_servers(found) == ((f"mail.{DOMAIN}", ports["imap"], "starttls"),
                                     (f"mail.{DOMAIN}", ports["smtps"], "implicit"))
    assert found.chosen.incoming.candidate.origin == f"https://{AUTOCONFIG_HOST}{CONFIG_PATH}"
    assert [t.verdict for t in found.tried] == [Verdict.KEPT, Verdict.KEPT]
    assert "PLAIN" in found.chosen.incoming.mechanisms and "TLSv1" in found.chosen.incoming.tls_detail
    assert outcome(found, Source.SRV) == "not consulted: settings were complete after the autoconfig file"
    assert web.requests == [(AUTOCONFIG_HOST, CONFIG_PATH)]
    assert not any(name.startswith("_imaps") for name, _ in dns.asked)  # SRV never asked
    assert found.as_dict()["chosen"]["incoming_source"] == "autoconfig"



def test_the_autoconfig_host_is_asked_at_its_next_address_when_the_first_refuses(mail_lab, zone_servers):
    ports = mail_lab.ports
    xml = config_xml(DOMAIN, [("imap", f"mail.{DOMAIN}", ports["imap"], "STARTTLS"),
                              ("smtp", f"mail.{DOMAIN}", ports["smtps"], "SSL")])
    dead_first = f"{AUTOCONFIG_HOST}. 60 IN A 127.0.0.2\n"  # the web server listens on 127.0.0.1 only
    with LabDnsServer(zone_servers + dead_first + a(AUTOCONFIG_HOST, f"mail.{DOMAIN}")) as dns, \
            AutoconfigServer({(AUTOCONFIG_HOST, CONFIG_PATH): xml}, mail_lab) as web:
        assert Lookup(parse_dns_server(dns.address), timeout=3).addresses(AUTOCONFIG_HOST)[0] == "127.0.0.2"
        found = detect(mail_lab, dns, standard_ports(mail_lab, port_443=web.port))
    assert found.chosen.incoming.candidate.origin == f"https://{AUTOCONFIG_HOST}{CONFIG_PATH}"
    assert web.requests == [(AUTOCONFIG_HOST, CONFIG_PATH)]

def test_the_well_known_autoconfig_address_is_asked_when_the_autoconfig_host_has_none(mail_lab, zone_servers):
    ports = mail_lab.ports
    xml = config_xml(DOMAIN, [("imap", f"mail.{DOMAIN}", ports["imap"], "plain"),
                              ("pop3", f"mail.{DOMAIN}", ports["pop3s"], "SSL"),
                              ("smtp", f"mail.{DOMAIN}", ports["smtp"], "STARTTLS")])
    with LabDnsServer(a(DOMAIN, f"mail.{DOMAIN}")) as dns, \
            AutoconfigServer({(DOMAIN, WELL_KNOWN_PATH): xml}, mail_lab) as web:
        found = detect(mail_lab, dns, standard_ports(mail_lab, port_443=web.port))
    assert chosen_servers(found) == ((f"mail.{DOMAIN}", ports["pop3s"], "implicit"),
                                     (f"mail.{DOMAIN}", ports["smtp"], "starttls"))
    assert found.chosen.profile_type == "pop3_smtp"
    in_clear = found.tried[0]
    assert (in_clear.candidate.tls, in_clear.verdict) == ("none", Verdict.DROPPED)
    assert in_clear.reason.endswith("is offered without TLS: a password would travel in clear")
    assert f"{AUTOCONFIG_HOST} has no address in DNS" in outcome(found, Source.AUTOCONFIG)
    assert web.requests == [(DOMAIN, WELL_KNOWN_PATH)]
    assert not found.warnings


def test_plain_http_autoconfig_counts_only_with_a_warning(mail_lab, zone_servers):
    ports = mail_lab.ports
    xml = config_xml(DOMAIN, [("imap", f"imap.{DOMAIN}", ports["imaps"], "SSL"),
                              ("smtp", f"smtp.{DOMAIN}", ports["smtps"], "SSL")])
    with LabDnsServer(zone_servers + a(AUTOCONFIG_HOST)) as dns, \
            AutoconfigServer({(AUTOCONFIG_HOST, CONFIG_PATH): xml}, mail_lab, tls=False) as web:
        found = detect(mail_lab, dns, standard_ports(mail_lab, port_80=web.port))
    assert found.chosen.incoming.candidate.origin == f"http://{AUTOCONFIG_HOST}{CONFIG_PATH}"
    assert len(found.warnings) == 1 and "plain HTTP" in found.warnings[0]
    # HTTPS was asked first and refused (443 leads nowhere here)
    assert f"https://{AUTOCONFIG_HOST}{CONFIG_PATH}: connection refused" in outcome(found, Source.AUTOCONFIG)


def test_an_autoconfig_file_with_a_dtd_is_ignored(mail_lab, zone_servers):
    bomb = (b'<?xml version="1.0"?><!DOCTYPE clientConfig [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><clientConfig>&b;</clientConfig>')
    with LabDnsServer(zone_servers + a(AUTOCONFIG_HOST)) as dns, \
            AutoconfigServer({(AUTOCONFIG_HOST, CONFIG_PATH): bomb}, mail_lab) as web:
        found = detect(mail_lab, dns, standard_ports(mail_lab, port_443=web.port))
    assert "was ignored: it holds a DTD" in outcome(found, Source.AUTOCONFIG)
    assert found.chosen.incoming.candidate.source == Source.SRV


def test_srv_records_are_tried_in_priority_order_and_a_dot_target_is_not_offered(mail_lab, zone_servers):
    ports = mail_lab.ports
    zone = (srv("_imaps._tcp", 10, 5, ports["imaps"], f"imap.{DOMAIN}")
            + srv("_imaps._tcp", 0, 5, ports["refused"], f"down.{DOMAIN}")
            + srv("_pop3s._tcp", 0, 0, 0, ".")
            + srv("_submissions._tcp", 0, 1, ports["smtps"], f"smtp.{DOMAIN}")
            + a(f"imap.{DOMAIN}", f"smtp.{DOMAIN}", f"down.{DOMAIN}"))
    with LabDnsServer(zone) as dns:
        found = detect(mail_lab, dns)
    assert [(t.candidate.host, t.verdict) for t in found.tried] == [
        (f"down.{DOMAIN}", Verdict.DROPPED), (f"imap.{DOMAIN}", Verdict.KEPT), (f"smtp.{DOMAIN}", Verdict.KEPT)]
    assert "connection refused" in found.tried[0].reason
    assert chosen_servers(found) == ((f"imap.{DOMAIN}", ports["imaps"], "implicit"),
                                     (f"smtp.{DOMAIN}", ports["smtps"], "implicit"))
    assert f"_pop3s._tcp.{DOMAIN}: not offered (target .)" in outcome(found, Source.SRV)
    assert not any(t.candidate.protocol == "pop3" for t in found.tried)
    assert outcome(found, Source.MX_PRESET).startswith("not consulted")



def test_a_host_is_tried_at_each_of_its_addresses_until_one_answers(mail_lab):
    """imap. and smtp. have a first address where nothing listens (127.0.0.2: the lab listens on
    127.0.0.1 only), as a host with a dead IPv4 address or a pool with one member down; down. has
    only dead ones, each named in the reason."""
    ports = mail_lab.ports
    dead = (f"imap.{DOMAIN}. 60 IN A 127.0.0.2\n" f"smtp.{DOMAIN}. 60 IN A 127.0.0.2\n"
            f"down.{DOMAIN}. 60 IN A 127.0.0.2\n" f"down.{DOMAIN}. 60 IN A 127.0.0.3\n")
    zone = (srv("_imaps._tcp", 0, 5, ports["imaps"], f"down.{DOMAIN}")
            + srv("_imaps._tcp", 10, 5, ports["imaps"], f"imap.{DOMAIN}")
            + srv("_submissions._tcp", 0, 1, ports["smtps"], f"smtp.{DOMAIN}")
            + dead + a(f"imap.{DOMAIN}", f"smtp.{DOMAIN}"))
    with LabDnsServer(zone) as dns:
        found = detect(mail_lab, dns)
        lookup = Lookup(parse_dns_server(dns.address), timeout=3)
        assert lookup.addresses(f"imap.{DOMAIN}") == ["127.0.0.2", "127.0.0.1"]  # the dead one first
    assert [(t.candidate.host, t.verdict, t.address) for t in found.tried] == [
        (f"down.{DOMAIN}", Verdict.DROPPED, "127.0.0.2"), (f"imap.{DOMAIN}", Verdict.KEPT, "127.0.0.1"),
        (f"smtp.{DOMAIN}", Verdict.KEPT, "127.0.0.1")]
    assert "connection refused" in found.tried[0].reason
    assert "the same at each of its addresses: 127.0.0.2, 127.0.0.3" in found.tried[0].reason
    assert chosen_servers(found) == ((f"imap.{DOMAIN}", ports["imaps"], "implicit"),
                                     (f"smtp.{DOMAIN}", ports["smtps"], "implicit"))

def test_a_candidate_whose_certificate_fails_is_dropped_with_the_reason(mail_lab, zone_servers):
    ports = mail_lab.ports
    zone = (srv("_imaps._tcp", 0, 1, ports["imaps"], "imap.elsewhere.test")
            + srv("_imaps._tcp", 5, 1, ports["imaps"], f"imap.{DOMAIN}")
            + srv("_submission._tcp", 0, 1, ports["smtp"], f"smtp.{DOMAIN}")
            + a("imap.elsewhere.test", f"imap.{DOMAIN}", f"smtp.{DOMAIN}"))
    with LabDnsServer(zone) as dns:
        found = detect(mail_lab, dns)
        untrusted = detect(mail_lab, dns, ca_file=mail_lab.wrong_ca_file)
    wrong_name = found.tried[0]
    assert (wrong_name.candidate.host, wrong_name.verdict) == ("imap.elsewhere.test", Verdict.DROPPED)
    assert "certificate" in wrong_name.reason and "another host name" in wrong_name.reason
    assert found.chosen.incoming.candidate.host == f"imap.{DOMAIN}"
    # the lab's servers are not trusted without the lab's CA: every candidate dropped, none proposed
    assert untrusted.chosen is None
    assert all(t.verdict == Verdict.DROPPED and "unknown authority" in t.reason for t in untrusted.tried)
    assert "no usable incoming (IMAP or POP3) or outgoing (SMTP) server" in untrusted.problem


def test_a_microsoft_365_domain_gets_the_preset_marked_not_probed(mail_lab):
    """The preset's hosts have no address in the local DNS (the real ones cannot be reached from
    the tests): the preset is proposed all the same, each server marked "not probed", with
    OAuth2 and the microsoft365 provider; the common names are not consulted."""
    zone = f"{DOMAIN}. 60 IN MX 0 detect-test.mail.protection.outlook.com.\n" + a(f"imap.{DOMAIN}")
    with LabDnsServer(zone) as dns:
        found = detect(mail_lab, dns)
    assert chosen_servers(found) == (("outlook.office365.com", 993, "implicit"),
                                     ("smtp.office365.com", 587, "starttls"))
    assert (found.chosen.auth, found.chosen.oauth_provider) == ("oauth2", "microsoft365")
    assert {t.verdict for t in found.tried} == {Verdict.NOT_PROBED}
    assert all(t.reason.startswith("not probed: unreachable from here (") for t in found.tried)
    assert "Microsoft 365" in outcome(found, Source.MX_PRESET)
    assert outcome(found, Source.COMMON_NAMES).startswith("not consulted")
    assert (f"imap.{DOMAIN}", "A") not in dns.asked


def test_a_google_domain_gets_the_google_preset(mail_lab):
    with LabDnsServer(f"{DOMAIN}. 60 IN MX 1 aspmx.l.google.com.\n") as dns:
        found = detect(mail_lab, dns)
    assert chosen_servers(found) == (("imap.gmail.com", 993, "implicit"), ("smtp.gmail.com", 465, "implicit"))
    assert found.chosen.oauth_provider == "google"


def test_common_host_names_are_probed_last(mail_lab):
    consulted: list[Source] = []
    with LabDnsServer(f"{DOMAIN}. 60 IN MX 10 mx.{DOMAIN}.\n" + a(f"imap.{DOMAIN}", f"smtp.{DOMAIN}")) as dns:
        found = detect(mail_lab, dns, on_source=consulted.append)
    assert consulted == [Source.AUTOCONFIG, Source.SRV, Source.MX_PRESET, Source.COMMON_NAMES]
    assert chosen_servers(found) == ((f"imap.{DOMAIN}", 993, "implicit"), (f"smtp.{DOMAIN}", 465, "implicit"))
    assert found.chosen.auth == "mailbox" and found.chosen.oauth_provider is None
    assert outcome(found, Source.SRV) == "no SRV records"
    assert "no known provider" in outcome(found, Source.MX_PRESET)
    assert {t.candidate.host for t in found.tried} == {f"imap.{DOMAIN}", f"smtp.{DOMAIN}"}  # mail. and pop. have none
    assert all(t.verdict == Verdict.KEPT for t in found.tried)


# -- creating the profile --

def test_create_saves_the_chosen_settings_and_the_preset_provider(org, mail_lab, zone_servers):
    with LabDnsServer(zone_servers) as dns:
        found = detect(mail_lab, dns)
    with pytest.raises(InvalidInput, match="--oauth-client-id"):
        create_profile(org.admin, "wrong", found, oauth_client_id="app-id")  # no provider to give it to
    created = create_profile(org.admin, "detected", found, ca_file=mail_lab.ca_file)
    row = Profile.get(Profile.name == "detected")
    assert (row.type, row.incoming_host, row.incoming_port, row.incoming_tls, row.incoming_auth) == (
        "imap_smtp", f"imap.{DOMAIN}", mail_lab.ports["imaps"], "implicit", "mailbox")
    assert (row.outgoing_host, row.outgoing_port, row.outgoing_tls, row.ca_file) == (
        f"smtp.{DOMAIN}", mail_lab.ports["smtp"], "starttls", mail_lab.ca_file)
    assert created.name == "detected"

    with LabDnsServer(f"{DOMAIN}. 60 IN MX 0 detect-test.mail.protection.outlook.com.\n") as dns:
        microsoft = detect(mail_lab, dns)
    with pytest.raises(InvalidInput, match="--oauth-client-id: is required"):
        create_profile(org.admin, "m365", microsoft)
    create_profile(org.admin, "m365", microsoft, oauth_client_id="11111111-2222-3333-4444-555555555555")
    row = Profile.get(Profile.name == "m365")
    assert (row.incoming_host, row.incoming_auth, row.oauth_provider, row.oauth_tenant) == (
        "outlook.office365.com", "oauth2", "microsoft365", DOMAIN)


def test_nothing_usable_is_refused_in_one_sentence(org, mail_lab):
    with LabDnsServer("") as dns:
        found = detect(mail_lab, dns)
    assert found.chosen is None and found.tried == ()
    with pytest.raises(NothingUsable, match=r"^no profile was created: no usable .* \(no source named a server\)"):
        create_profile(org.admin, "empty", found)
    assert Profile.select().count() == 0


# -- the command line --

@pytest.fixture
def dns_with_servers(zone_servers: str) -> Iterator[LabDnsServer]:
    with LabDnsServer(zone_servers) as dns:
        yield dns


def test_cli_proposes_without_saving_then_creates_when_asked(org, mail_lab, dns_with_servers):
    dns = dns_with_servers
    base = ("profile", "detect", EMAIL, "--dns-server", dns.address, "--ca-file", mail_lab.ca_file, "--timeout", "3")
    shown = org.cli(*base)
    assert shown.returncode == 0, shown.stderr
    assert f"kept       IMAP imap.{DOMAIN}:{mail_lab.ports['imaps']} implicit (SRV records)" in shown.stdout
    assert "Nothing was saved: run again with --create NAME" in shown.stdout
    as_json = json.loads(org.cli(*base, "--json").stdout)
    assert as_json["chosen"]["incoming_host"] == f"imap.{DOMAIN}"
    assert [s["source"] for s in as_json["sources"]] == ["autoconfig", "srv", "mx_preset", "common_names"]
    assert {c["verdict"] for c in as_json["candidates"]} == {"kept"}
    assert Profile.select().count() == 0

    created = org.cli(*base, "--create", "from-detect", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["created"]["name"] == "from-detect"
    assert Profile.get(Profile.name == "from-detect").outgoing_port == mail_lab.ports["smtp"]

    asked_before = len(dns.asked)
    again = org.cli(*base, "--create", "from-detect")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.strip().splitlines() == [
        "mbxtui: a profile named 'from-detect' already exists: choose another name with --create, nothing was probed"]
    assert len(dns.asked) == asked_before


def test_cli_refuses_a_bad_email_address(org):
    done = org.cli("profile", "detect", "not-an-address", "--dns-server", "127.0.0.1:9")
    assert done.returncode == 1
    assert done.stderr.startswith("mbxtui: email: 'not-an-address' is not a valid email address")
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_says_when_the_dns_server_does_not_answer(org):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))  # bound, never read: queries sent there get no answer
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        done = org.cli("profile", "detect", EMAIL, "--dns-server", address, "--timeout", "1")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mbxtui: the DNS server {address} did not answer within 1 s"), lines
    assert "--dns-server" in lines[0]


def test_cli_create_with_nothing_usable_saves_nothing(org, mail_lab):
    with LabDnsServer("") as dns:
        done = org.cli("profile", "detect", EMAIL, "--dns-server", dns.address, "--create", "none-here",
                       "--timeout", "2")
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mbxtui: no profile was created: no usable"), lines
    assert Profile.select().count() == 0
