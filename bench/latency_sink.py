"""An SMTP sink that waits before every reply, like a relay one network round trip away.

    python bench/latency_sink.py --port 2525 --latency-ms 20

aiosmtpd with every reply (greeting included) delayed by the given latency, so a client
pays one round trip per command as it would against a real relay. Messages are counted,
not stored; SIGTERM prints "received N messages, M duplicate recipients" and exits.
"""

import argparse
import asyncio
import collections
import contextlib
import signal
import socket
import subprocess
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class CountingHandler:
    def __init__(self):
        self.messages = 0
        self.per_recipient = collections.Counter()

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        self.per_recipient.update(envelope.rcpt_tos)
        return "250 OK"


class DelayedSMTP(SMTP):
    latency = 0.0

    async def push(self, status):
        if self.latency:
            await asyncio.sleep(self.latency)
        await super().push(status)


class LatencyController(Controller):
    def __init__(self, handler, latency, **kwargs):
        self.latency = latency
        super().__init__(handler, **kwargs)

    def factory(self):
        server = DelayedSMTP(self.handler, **self.SMTP_kwargs)
        server.latency = self.latency
        return server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_sink(latency_ms):
    """This sink in its own process on a free loopback port: yields the port, and prints
    what it received when the block ends."""
    port = free_port()
    command = [sys.executable, __file__, "--port", str(port), "--latency-ms", str(latency_ms)]
    sink = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        yield port
    finally:
        sink.terminate()
        out, _ = sink.communicate()
        print("sink:", out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    handler = CountingHandler()
    controller = LatencyController(
        handler, args.latency_ms / 1000, hostname=args.host, port=args.port
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"listening on {args.host}:{args.port}, {args.latency_ms:g} ms per reply", flush=True)
    stop.wait()
    controller.stop()
    duplicates = sum(1 for n in handler.per_recipient.values() if n > 1)
    print(f"received {handler.messages} messages, {duplicates} duplicate recipients", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
