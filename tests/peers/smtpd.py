#!/usr/bin/env python3
"""A real SMTP server for the email notifier's tests: aiosmtpd storing each message in a
Maildir, optionally with STARTTLS (required), implicit TLS and AUTH (required).

    smtpd.py [--host IP] --port 0 --maildir DIR [--cert C --key K [--implicit-tls]] [--auth USER:PASSWORD]

Binds 127.0.0.1, or --host (port 0: any free port), then prints `ready PORT` on stdout and serves
until killed or until stdin closes (so it never outlives the test that started it).
"""

import argparse
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


class AnyPortController(Controller):
    """A Controller that may bind port 0: the real port is read back before the server is
    poked to start."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--maildir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--auth", help="USER:PASSWORD that AUTH accepts; AUTH is then required")
    args = p.parse_args()

    # Without tmp/new/cur the Mailbox handler answers 500 to DATA.
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(args.maildir, sub), exist_ok=True)

    kwargs = {}
    ssl_context = None
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
        if args.implicit_tls:
            ssl_context = ctx
        else:
            kwargs.update(tls_context=ctx, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            # handled=False: aiosmtpd answers 535 itself on failure.
            return AuthResult(success=ok, handled=False)

        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            # AUTH over TLS only, as real relays do; plain servers (tests) may allow it.
            auth_require_tls=bool(args.cert),
        )

    controller = AnyPortController(
        Mailbox(args.maildir),
        hostname=args.host,
        port=args.port,
        ssl_context=ssl_context,
        # A fixed name: the default asks DNS for this host's FQDN, slow on a closed network.
        server_hostname="smtp.test",
        **kwargs,
    )
    controller.start()
    print(f"ready {controller.port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
