"""An autoconfig web server on 127.0.0.1 for settings detection's tests: HTTPS with the lab's
server certificate (signed by the lab CA, and valid for the names under certs.DETECTION_DOMAIN),
or plain HTTP, on a free port, serving the files the test gives by host name and path.

    with AutoconfigServer({("autoconfig.detect.test", "/mail/config-v1.1.xml"): xml}, lab) as web:
        ... reach_ports={443: web.port} ...

Anything else is a 404. ``requests`` lists every (host, path) asked.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .mail_lab import MailLab

CONFIG_PATH = "/mail/config-v1.1.xml"
WELL_KNOWN_PATH = "/.well-known/autoconfig/mail/config-v1.1.xml"


def config_xml(domain: str, servers: list[tuple[str, str, int, str]]) -> bytes:
    """A config-v1.1.xml naming ``servers`` as (type, host name, port, socketType); type imap
    and pop3 are incoming, smtp outgoing."""
    entries = []
    for kind, host, port, socket_type in servers:
        element = "outgoingServer" if kind == "smtp" else "incomingServer"
        entries.append(f"""    <{element} type="{kind}">
      <hostname>{host}</hostname>
      <port>{port}</port>
      <socketType>{socket_type}</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </{element}>""")
    body = "\n".join(entries)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{domain}">
    <domain>{domain}</domain>
{body}
  </emailProvider>
</clientConfig>
""".encode()


class AutoconfigServer:
    def __init__(self, files: dict[tuple[str, str], bytes], lab: MailLab, *, tls: bool = True) -> None:
        self.files = files
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
                path = self.path.split("?", 1)[0]
                server.requests.append((host, path))
                body = server.files.get((host, path))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            certs = Path(lab.workdir) / "certs"
            context.load_cert_chain(certs / "server.pem", certs / "server.key")
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="autoconfig-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> AutoconfigServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
