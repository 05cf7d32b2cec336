"""A loopback TCP forwarder for tests that play the network between a client and a server.

It listens on a port of its own and joins every connection to a target port, which can be
switched (a managed database's endpoint moving to the promoted standby), frozen (bytes
stop flowing both ways while connections stay open: a replication link that lags) or
cut (every connection closed at once: the old primary's host gone).
"""

import socket
import threading
import time

from tests.smtp_sink import free_port


class TcpProxy:
    def __init__(self, target_port):
        self.port = free_port()
        self.target_port = target_port
        self._frozen = threading.Event()
        self._closing = threading.Event()
        self._sockets = set()
        self._lock = threading.Lock()
        self._listener = None

    def start(self):
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self._closing.set()
        self.cut()
        self._listener.close()

    def point_to(self, target_port):
        """New connections go to `target_port`."""
        self.target_port = target_port

    def freeze(self):
        self._frozen.set()

    def thaw(self):
        self._frozen.clear()

    def cut(self):
        """Close every connection open now."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self):
        while not self._closing.is_set():
            try:
                client, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                while self._frozen.is_set() and not self._closing.is_set():
                    time.sleep(0.05)
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
