"""A loopback HTTP server that answers like Postmark's send API (POST /email), for
django-anymail's real Postmark backend pointed at it with ANYMAIL["POSTMARK_API_URL"].

Recipients' local parts script the answers, as in tests/smtp_sink.py:
  inactive@   -> 422, ErrorCode 406: the address is marked inactive (bounced/complained)
  invalid@    -> 422, ErrorCode 300: "Invalid 'To' address"
  badmeta@    -> 422, ErrorCode 300: a refusal that is not about the recipient
  ratelimited@ -> 429 with Retry-After: 3600
  servererror@ -> 500
  slow@       -> answers after `slow_reply` seconds (past the client's timeout)
A request without the right X-Postmark-Server-Token gets 401, ErrorCode 10.
`requests` holds every request's JSON body and headers, in order.
"""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "postmark-test-token"


class FakePostmark:
    def __init__(self, token=TOKEN):
        self.token = token
        self.requests = []
        self.slow_reply = 2.0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                record = {"path": self.path, "headers": dict(self.headers), "body": body}
                with fake.lock:
                    fake.requests.append(record)
                status, answer, headers = fake.answer(record)
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (slow@)

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # shutdown() waits for serve_forever's next poll: the default 0.5 s is per test.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def sent(self):
        """The bodies of the requests Postmark accepted (what recipients would get)."""
        return [r["body"] for r in self.requests if r.get("accepted")]

    def answer(self, record):
        path, headers, body = record["path"], record["headers"], record["body"]
        if headers.get("X-Postmark-Server-Token") != self.token:
            return (
                401,
                {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."},
                {},
            )
        if path != "/email":
            return 404, {"ErrorCode": 404, "Message": "Not found"}, {}
        to = body["To"]
        address = to.rpartition("<")[2].rstrip(">")
        local = address.split("@")[0]
        if local == "inactive":
            return (
                422,
                {
                    "ErrorCode": 406,
                    "Message": "You tried to send to a recipient that has been marked as inactive.\n"
                    f"Found inactive addresses: {address}.\n"
                    "Inactive recipients are ones that have generated a hard bounce or a spam complaint. ",
                },
                {},
            )
        if local == "invalid":
            return 422, {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{address}'."}, {}
        if local == "badmeta":
            return 422, {"ErrorCode": 300, "Message": "Invalid metadata content."}, {}
        if local == "ratelimited":
            return (
                429,
                {"ErrorCode": 429, "Message": "Rate limit exceeded."},
                {"Retry-After": "3600"},
            )
        if local == "servererror":
            return 500, {"ErrorCode": 500, "Message": "Internal server error."}, {}
        if local == "slow":
            time.sleep(self.slow_reply)
        record["accepted"] = True
        return (
            200,
            {
                "To": to,
                "SubmittedAt": "2026-11-28T12:00:00.0000000Z",
                "MessageID": str(uuid.uuid4()),
                "ErrorCode": 0,
                "Message": "OK",
            },
            {},
        )
