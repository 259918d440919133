"""The new-profile form's "Detect from an address" step (issue 13): an address (and, as with
``profile detect --dns-server``, the DNS server to ask), detection run in a thread worker with each
source shown as it is consulted, then the form's server, port, TLS, credentials and OAuth provider
fields filled from the settings proposed, for the person to check and save. Nothing is saved here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from mbxtui.core.display import safe
from mbxtui.core.enums import OAuthProvider
from mbxtui.tui.messages import ServiceFailed
from mbxtui.tui.widgets.select import Select

if TYPE_CHECKING:
    from mbxtui.core.detect import Detection, Source

DETECT_GROUP = "detect"
NOT_RUN = "Type the address of a mailbox at the new servers, then ctrl+t: nothing is saved until you save the form."


class DetectStep(Vertical):
    """The step's fields and what detection said; outside the form, so never saved with it."""

    DEFAULT_CSS = """
    DetectStep { height: auto; padding: 0 1; }
    DetectStep .form-row { height: auto; }
    DetectStep .row-label { width: 32; padding-right: 1; }
    DetectStep Input { width: 1fr; background: $boost; }
    DetectStep #detect-output { height: auto; max-height: 5; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("Detect from an address", classes="row-label", markup=False)
            yield Input(id="detect_email", placeholder="someone@the-domain", compact=True)
            yield Button("Detect (ctrl+t)", id="detect", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("DNS server for detection", classes="row-label", markup=False)
            yield Input(id="detect_dns_server", placeholder="HOST[:PORT]; empty: this machine's resolver",
                        compact=True)
        with VerticalScroll(id="detect-output"):
            yield Static(NOT_RUN, id="detect-text", markup=False)

    def show(self, text: str) -> None:
        if self.is_mounted:  # a late answer after the form was closed is dropped
            self.query_one("#detect-text", Static).update(text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "detect":
            event.stop()
            self.screen.run_action("detect")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("detect_email", "detect_dns_server"):
            event.stop()
            self.screen.run_action("detect")


def detection_lines(found: Detection) -> list[str]:
    """What each source gave and what is proposed, as the command line prints it (shorter)."""
    from mbxtui.core.detect.model import SOURCE_NAMES

    lines = [f"{SOURCE_NAMES[report.source]}: {safe(report.outcome)}" for report in found.sources]
    lines += [f"Warning: {safe(warning)}" for warning in found.warnings]
    if found.chosen is None:
        return [f"Nothing to propose: {safe(found.problem)}", *lines]
    incoming, outgoing = found.chosen.incoming.candidate, found.chosen.outgoing.candidate
    provider = f", OAuth2 provider {found.chosen.oauth_provider}" if found.chosen.oauth_provider else ""
    return [f"Proposed for {safe(found.email)}: {incoming.protocol.upper()} {safe(incoming.where)} {incoming.tls}, "
            f"SMTP {safe(outgoing.where)} {outgoing.tls}, {found.chosen.auth} credentials{provider}. "
            f"Check the fields below, then save (ctrl+s); nothing is saved until then.", *lines]


class DetectsSettings:
    """For ``ProfileFormScreen``: runs detection and fills the form. ``reach_ports`` comes from the
    app, which only the tests construct with one (their servers listen on free ports)."""

    detecting = False

    def action_detect(self) -> None:
        # Loaded on first use, as the command line does: DNS and probing cost the console's start nothing.
        from mbxtui.core.detect import detect_settings
        from mbxtui.core.detect.model import SOURCE_NAMES

        screen: Any = self
        if self.detecting or not screen.query("DetectStep"):
            return
        step = screen.query_one(DetectStep)
        email = screen.query_one("#detect_email", Input).value.strip()
        dns_server = screen.query_one("#detect_dns_server", Input).value.strip() or None
        ca_file = screen.query_one("#ca_file", Input).value.strip() or None
        reach_ports = screen.app.reach_ports
        actor, app = screen.actor, screen.app
        consulted: list[str] = []

        def on_source(source: Source) -> None:
            consulted.append(SOURCE_NAMES[source])
            app.call_from_thread(step.show, f"Detecting the settings of {safe(email)}: consulting the "
                                            f"{', then the '.join(consulted)}…")

        self.detecting = True
        step.show(f"Detecting the settings of {safe(email)}…")
        screen.call(lambda: detect_settings(actor, email, dns_server=dns_server, ca_file=ca_file,
                                            reach_ports=reach_ports, on_source=on_source),
                    self.detected, group=DETECT_GROUP, title="Detection")

    def detected(self, found: Detection) -> None:
        self.detecting = False
        screen: Any = self
        screen.query_one(DetectStep).show("\n".join(detection_lines(found)))
        if found.chosen is None:
            screen.app.bell()
            return
        fields = found.chosen.profile_fields()
        for key, value in fields.items():
            widget = screen.query_one(f"#{key}")
            if isinstance(widget, Select):
                widget.value = value or "none"
            else:
                widget.value = str(value)
        tenant = screen.query_one("#oauth_tenant", Input)
        if fields["oauth_provider"] == OAuthProvider.MICROSOFT365 and not tenant.value.strip():
            tenant.value = found.domain  # as ``profile detect --create`` defaults it
        screen.query_one("#incoming_host", Input).focus()

    def detect_failed(self, message: ServiceFailed) -> bool:
        """The service's sentence in place of the step's output; True when it was detection's."""
        if message.group != DETECT_GROUP:
            return False
        self.detecting = False
        message.stop()
        screen: Any = self
        if screen.query("DetectStep"):
            screen.query_one(DetectStep).show(f"Detection: {message.problem}")
        return True
