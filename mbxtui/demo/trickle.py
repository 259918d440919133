"""The demo's trickle of mail: while the demo runs, its sandbox inboxes receive a few realistic
messages a minute, so that a newcomer sees activities arrive as the demo processes them.

Customers write to the organisation's queues (Customer Support, Orders, Billing...), often with a
member of staff in copy; some messages carry a small attachment (a PDF or a CSV); some are replies
to earlier ones (In-Reply-To and References), which is what users' mailboxes track by default
(R27). Staff whose incoming method is ``forward_mailbox`` receive their copy through the forward
mailbox, with a Delivered-To header naming them (R26).

Deterministic: the same seed gives the same senders, recipients, subjects, bodies and attachments
in the same order. Only the Message-IDs carry the run's own stamp, so that a demo started again
receives new mail rather than the copies of what it recorded before. Bounded: it stops after
``count`` messages. Nothing leaves the process: messages go straight into the sandbox's inboxes.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate

from mbxtui.demo import seed
from mbxtui.demo.mailsystem import MailSystem

TRICKLE_SEED = 20261206
DEFAULT_COUNT = 120
DEFAULT_INTERVAL = 15.0  # seconds between messages: four a minute, half an hour in all
FIRST_DELAY = 5.0

CUSTOMERS = (
    ("Olivia Brandt", "northwind-traders.example"), ("Kwame Mensah", "bluepeak-retail.example"),
    ("Lucía Ortega", "ortega-imports.example"), ("Henrik Dahl", "nordlys-furniture.example"),
    ("Mei Lin", "harbourview-electronics.example"), ("Samuel Adeyemi", "lagos-freight.example"),
    ("Chloé Martin", "atelier-martin.example"), ("Raj Patel", "patel-wholesale.example"),
    ("Ingrid Svensson", "fjord-outdoor.example"), ("Tom Gallagher", "gallagher-garden.example"),
)
TOPICS = {
    "support": ("Tracking number not updating", "Parcel marked delivered but not received",
                "Damaged packaging on arrival", "Change of delivery slot"),
    "orders": ("Order {n}: change of delivery address", "Bulk order for next month", "Order {n} confirmation"),
    "billing": ("Query about invoice INV-{n}", "Duplicate charge on our account", "Request for a VAT receipt"),
    "accounts-payable": ("Remittance advice {n}", "Updated bank details for payments"),
    "helpdesk": ("Cannot log in to the customer portal", "Label printer offline at our depot"),
    "returns": ("Return authorisation for order {n}", "Wrong item received in order {n}"),
    "fleet": ("Van booking for Thursday", "Collection from our warehouse on Monday"),
}
BODIES = (
    "Hello,\n\nCould you have a look at this for us? {detail}\n\nThanks in advance,\n{sender}\n",
    "Good morning,\n\n{detail} Please let me know what you need from our side.\n\nKind regards,\n{sender}\n",
    "Hi team,\n\nFollowing our call: {detail}\n\nBest,\n{sender}\n",
)
DETAILS = (
    "The consignment left our site on Tuesday and we have heard nothing since.",
    "Our reference is in the subject line; the pallet count is 14.",
    "We would like to move the delivery to the afternoon if possible.",
    "The attached document has the figures for the last quarter.",
    "Our accounts team asked me to confirm the amounts before the end of the month.",
)
REPLY_BODIES = (
    "Thank you for the quick answer. {detail}\n\n{sender}\n",
    "Hello again,\n\nJust following up on the message below: any news?\n\n{sender}\n",
    "Many thanks, that solves it for us.\n\n{sender}\n",
)
ATTACHMENTS = (("delivery-note-{n}.pdf", "application/pdf"), ("invoice-{n}.pdf", "application/pdf"),
               ("order-lines-{n}.csv", "text/csv"))
REPLY_SHARE = 0.3
ATTACHMENT_SHARE = 0.25
COPY_SHARE = 0.6  # new conversations with a member of staff in copy
FORWARDED_COPY_SHARE = 0.5  # of those, staff served by the forward mailbox


@dataclass(frozen=True)
class Delivery:
    """One message and the inboxes it lands in (``inboxes``: inbox address -> the address its
    Delivered-To header names)."""

    index: int
    kind: str  # new, attachment or reply
    subject: str
    inboxes: tuple[tuple[str, str], ...]
    headers: str  # every header but Date and Delivered-To, with the line break after each
    body: bytes

    def data(self, delivered_to: str, moment: float) -> bytes:
        return (f"Delivered-To: {delivered_to}\r\nDate: {formatdate(moment)}\r\n{self.headers}".encode("utf-8")
                + b"\r\n" + self.body)


@dataclass
class _Conversation:
    message_ids: list[str]
    subject: str
    customer: tuple[str, str]
    queue: str
    copy: str | None


def plan(organisation: seed.DemoOrganisation, count: int = DEFAULT_COUNT, *, seed_value: int = TRICKLE_SEED,
         run: str = "demo") -> list[Delivery]:
    """The ``count`` messages of a trickle, in order; ``run`` is part of every Message-ID."""
    generator = random.Random(seed_value)
    queues = [local for local in TOPICS if local in organisation.queues]
    staff = [organisation.users[name] for name in (seed.ADMIN_USER, *(name for _, _, name in seed.OPERATORS))]
    forwarded = list(organisation.forwarded)
    conversations: list[_Conversation] = []
    deliveries = []
    for index in range(1, count + 1):
        if conversations and generator.random() < REPLY_SHARE:
            deliveries.append(_reply(generator, generator.choice(conversations), index, run, organisation))
            continue
        queue = generator.choice(queues)
        customer = generator.choice(CUSTOMERS)
        copy = None
        if generator.random() < COPY_SHARE:
            copy = generator.choice(forwarded if forwarded and generator.random() < FORWARDED_COPY_SHARE else staff)
        number = generator.randint(10000, 99999)
        subject = generator.choice(TOPICS[queue]).format(n=number)
        conversation = _Conversation([], subject, customer, organisation.queues[queue], copy)
        conversations.append(conversation)
        attachment = generator.random() < ATTACHMENT_SHARE
        text = generator.choice(BODIES).format(detail=generator.choice(DETAILS), sender=customer[0])
        body, content_headers = _with_attachment(generator, text, number) if attachment else _plain(text)
        deliveries.append(_delivery(index, "attachment" if attachment else "new", conversation, subject, run,
                                    content_headers, body, [], organisation))
    return deliveries


def _reply(generator: random.Random, conversation: _Conversation, index: int, run: str,
           organisation: seed.DemoOrganisation) -> Delivery:
    text = generator.choice(REPLY_BODIES).format(detail=generator.choice(DETAILS), sender=conversation.customer[0])
    body, content_headers = _plain(text)
    references = list(conversation.message_ids[-5:])
    return _delivery(index, "reply", conversation, f"Re: {conversation.subject}", run, content_headers, body,
                     references, organisation)


def _delivery(index: int, kind: str, conversation: _Conversation, subject: str, run: str, content_headers: str,
              body: bytes, references: list[str], organisation: seed.DemoOrganisation) -> Delivery:
    name, domain = conversation.customer
    message_id = f"<trickle.{run}.{index}@{domain}>"
    conversation.message_ids.append(message_id)
    lines = [f"From: {name} <{name.split()[0].lower()}@{domain}>", f"To: {conversation.queue}"]
    inboxes = [(conversation.queue, conversation.queue)]
    if conversation.copy is not None:
        lines.append(f"Cc: {conversation.copy}")
        served_by_forwarding = conversation.copy in organisation.forwarded
        inboxes.append((organisation.forward_mailbox if served_by_forwarding else conversation.copy,
                        conversation.copy))
    lines += [f"Subject: {subject}", f"Message-ID: {message_id}"]
    if references:
        lines += [f"In-Reply-To: {references[-1]}", f"References: {' '.join(references)}"]
    lines += ["MIME-Version: 1.0", content_headers]
    return Delivery(index, kind, subject, tuple(inboxes), "".join(f"{line}\r\n" for line in lines), body)


def _plain(text: str) -> tuple[bytes, str]:
    return (text.replace("\n", "\r\n").encode("utf-8"),
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit")


def _with_attachment(generator: random.Random, text: str, number: int) -> tuple[bytes, str]:
    filename, content_type = generator.choice(ATTACHMENTS)
    filename = filename.format(n=number)
    if content_type == "text/csv":
        rows = ["sku,description,quantity"] + [f"FH-{generator.randint(1000, 9999)},Pallet wrap,{generator.randint(1, 40)}"
                                               for _ in range(generator.randint(5, 30))]
        payload = ("\r\n".join(rows) + "\r\n").encode("ascii")
    else:
        payload = b"%PDF-1.4\n% demo document\n" + bytes(generator.getrandbits(8) for _ in range(generator.randint(800, 4000)))
    boundary = f"=_fernhill_{number}"
    encoded = base64.encodebytes(payload).decode("ascii").replace("\n", "\r\n")
    parts = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
             f"{text.replace(chr(10), chr(13) + chr(10))}\r\n"
             f"--{boundary}\r\nContent-Type: {content_type}; name=\"{filename}\"\r\n"
             f"Content-Disposition: attachment; filename=\"{filename}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
             f"{encoded}\r\n--{boundary}--\r\n")
    return parts.encode("utf-8"), f"Content-Type: multipart/mixed; boundary=\"{boundary}\""


@dataclass
class Trickle:
    """Delivers ``deliveries`` into ``mail``, one every ``interval`` seconds (the first after
    ``first_delay``), on a daemon thread; :meth:`stop` ends it at once."""

    mail: MailSystem
    deliveries: list[Delivery]
    interval: float = DEFAULT_INTERVAL
    first_delay: float = FIRST_DELAY
    delivered: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Trickle:
        self._thread = threading.Thread(target=self._run, name="mbxtui-demo-trickle", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        wait = self.first_delay
        for delivery in self.deliveries:
            if self._stop.wait(wait):
                return
            moment = time.time()
            for inbox, delivered_to in delivery.inboxes:
                self.mail.deliver(inbox, delivery.data(delivered_to, moment))
            self.delivered += 1
            wait = self.interval
