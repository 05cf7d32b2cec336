"""An SMTP sink that answers one network round trip late, like a relay far away.

    python bench/latency_sink.py --port 2525 --latency-ms 20

aiosmtpd whose every reply (greeting included) leaves the given latency after the command
it answers arrived. The server itself answers at once, as over a real network: a client
that waits for each reply pays the latency per command, and replies to commands sent
together (PIPELINING, which the sink offers as Postfix does) travel back together.
Messages are counted, not stored; SIGTERM prints "received N messages, M duplicate
recipients, X s CPU" and exits. With --expect N --done-file F it writes the wall-clock
time (time.time()) to F when the Nth message arrives, so a benchmark whose sender cannot
say when it finished (a Celery worker) is timed by what arrived.
"""

import argparse
import asyncio
import collections
import contextlib
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

# Run as a script, this file's folder (bench/) is the only one of the project's on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.smtp_sink import free_port  # noqa: E402


class CountingHandler:
    def __init__(self, expect=None, done_file=None):
        self.messages = 0
        self.per_recipient = collections.Counter()
        self.expect = expect
        self.done_file = done_file

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        self.per_recipient.update(envelope.rcpt_tos)
        if self.messages == self.expect and self.done_file:
            Path(self.done_file).write_text(repr(time.time()))
        return "250 OK"


class DelayedSMTP(SMTP):
    latency = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._replies = asyncio.Queue()
        self._sender = None

    async def push(self, status):
        if not self.latency:
            await super().push(status)
            return
        if isinstance(status, str):
            status = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        due = asyncio.get_running_loop().time() + self.latency
        self._replies.put_nowait((due, status + b"\r\n"))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_replies())
        if status.startswith(b"221"):
            # QUIT closes the connection right after this reply: let it leave first.
            await self._replies.join()

    async def _send_replies(self):
        loop = asyncio.get_running_loop()
        while True:
            due, line = await self._replies.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if self.transport is not None and not self.transport.is_closing():
                self._writer.write(line)
            self._replies.task_done()

    def connection_lost(self, exc):
        if self._sender is not None:
            self._sender.cancel()
        super().connection_lost(exc)


class LatencyController(Controller):
    def __init__(self, handler, latency, **kwargs):
        self.latency = latency
        super().__init__(handler, **kwargs)

    def factory(self):
        server = DelayedSMTP(self.handler, **self.SMTP_kwargs)
        server.latency = self.latency
        return server


@contextlib.contextmanager
def running_sink(latency_ms, expect=None, done_file=None):
    """This sink in its own process on a free loopback port: yields the port, and prints
    what it received when the block ends."""
    port = free_port()
    command = [sys.executable, __file__, "--port", str(port), "--latency-ms", str(latency_ms)]
    if expect:
        command += ["--expect", str(expect), "--done-file", str(done_file)]
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
    parser.add_argument("--expect", type=int, help="with --done-file: messages to wait for")
    parser.add_argument("--done-file", help="gets time.time() when --expect messages arrived")
    args = parser.parse_args()
    handler = CountingHandler(args.expect, args.done_file)
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
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"received {handler.messages} messages, {duplicates} duplicate recipients, "
        f"{usage.ru_utime + usage.ru_stime:.2f} s CPU",
        flush=True,
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
