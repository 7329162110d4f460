"""A real SMTP server for the mail tests (Debian's python3-aiosmtpd).

Usage: smtp_sink.py PORT OUT_FILE [USER:PASSWORD]

Listens on 127.0.0.1:PORT. Every message accepted is decoded with Python's
own email package (an implementation independent of vaxslot's) and written
as one JSON line to OUT_FILE: message_id, from, to, subject and the text
body, all decoded. A recipient whose address starts with "reject" is
refused for good (550), one starting with "later" for now (451). With
USER:PASSWORD, only a client that logs in with them (AUTH PLAIN or LOGIN)
may send; a wrong password is refused (535). With SMTP_SINK_DELAY_MS in the
environment, each message is answered that long after its data arrived (a
slow server). Prints "ready" once listening.
"""

import asyncio
import email
import email.policy
import json
import os
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, out_path, delay_s=0.0):
        self.out_path = out_path
        self.delay_s = delay_s

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("later"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        received_ms = int(time.time() * 1000)
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        record = {
            "message_id": str(message["Message-ID"]),
            "from": str(message["From"]),
            "to": str(message["To"]),
            "subject": str(message["Subject"]),
            "content_type": message.get_content_type(),
            "charset": message.get_content_charset(),
            "body": body.get_content() if body is not None else "",
            "envelope_to": list(envelope.rcpt_tos),
            # When the data arrived and when it was accepted (unix ms).
            "received_ms": received_ms,
            "accepted_ms": int(time.time() * 1000),
        }
        with open(self.out_path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return "250 Message accepted for delivery"


def authenticator_for(expected):
    user, password = expected.split(":", 1)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            auth_data is not None
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok)

    return authenticate


def main():
    port = int(sys.argv[1])
    options = {}
    if len(sys.argv) > 3:
        options = {
            "authenticator": authenticator_for(sys.argv[3]),
            "auth_required": True,
            # Loopback only, for the test: real servers take AUTH over TLS.
            "auth_require_tls": False,
        }
    delay_s = int(os.environ.get("SMTP_SINK_DELAY_MS", "0")) / 1000
    controller = Controller(
        Sink(sys.argv[2], delay_s), hostname="127.0.0.1", port=port, **options
    )
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
