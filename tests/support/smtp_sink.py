"""A real SMTP server on loopback that keeps every message it accepts, for tests.

Speaks enough SMTP (RFC 5321) for ``smtplib``: EHLO/HELO, MAIL, RCPT, DATA (with
dot-unstuffing), RSET, NOOP, QUIT. Recipients in ``refuse`` get ``550`` at RCPT.

    sink = SmtpSink().start()       # sink.host, sink.port
    message = sink.wait_for(1)[0]   # .mail_from, .rcpt_to, .message (email.message)
    sink.stop()
"""
import email
import email.policy
import socketserver
from dataclasses import dataclass

from tests.support.loopback import LoopbackServer

MAX_LINE = 10_000


@dataclass
class Mail:
    mail_from: str
    rcpt_to: list
    data: bytes
    message: email.message.EmailMessage


class SmtpSink(LoopbackServer):
    noun = "e-mails"

    def __init__(self, refuse=()):
        super().__init__()
        self.refuse = {address.lower() for address in refuse}

    @property
    def messages(self):
        """The e-mails accepted so far."""
        return self.received

    def make_server(self, address):
        sink = self

        class Session(socketserver.StreamRequestHandler):
            timeout = 10

            def reply(self, line):
                self.wfile.write(line.encode("ascii") + b"\r\n")
                self.wfile.flush()

            def handle(self):
                self.reply("220 sink ESMTP ready")
                mail_from, rcpt_to = None, []
                while True:
                    line = self.rfile.readline(MAX_LINE)
                    if not line:
                        return
                    command = line.decode("utf-8", "replace").rstrip("\r\n")
                    verb = command[:4].upper()
                    if verb == "EHLO":
                        self.reply("250-sink greets you")
                        self.reply("250-8BITMIME")
                        self.reply("250 SIZE 10485760")
                    elif verb == "HELO":
                        self.reply("250 sink")
                    elif verb == "MAIL":
                        mail_from, rcpt_to = _address(command), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        address = _address(command)
                        if address.lower() in sink.refuse:
                            self.reply("550 5.1.1 no such mailbox")
                        else:
                            rcpt_to.append(address)
                            self.reply("250 OK")
                    elif verb == "DATA":
                        if not rcpt_to:
                            self.reply("503 need RCPT first")
                            continue
                        self.reply("354 end with <CRLF>.<CRLF>")
                        data = self.read_data()
                        if data is None:
                            return
                        message = email.message_from_bytes(data, policy=email.policy.default)
                        sink.keep(Mail(mail_from, rcpt_to, data, message))
                        mail_from, rcpt_to = None, []
                        self.reply("250 OK queued")
                    elif verb == "RSET":
                        mail_from, rcpt_to = None, []
                        self.reply("250 OK")
                    elif verb == "NOOP":
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 command not implemented")

            def read_data(self):
                lines = []
                while True:
                    line = self.rfile.readline(MAX_LINE)
                    if not line:
                        return None
                    if line in (b".\r\n", b".\n"):
                        return b"".join(lines)
                    if line.startswith(b".."):
                        line = line[1:]
                    lines.append(line)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        return Server(address, Session)


def _address(command):
    """The address of ``MAIL FROM:<a@b> ...`` or ``RCPT TO:<a@b>``."""
    _, _, rest = command.partition(":")
    rest = rest.strip()
    if rest.startswith("<"):
        return rest[1:rest.index(">")] if ">" in rest else rest[1:]
    return rest.split()[0] if rest else ""
