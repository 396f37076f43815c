"""A minimal websocket client (RFC 6455) in the Python stdlib, for the tests.

Handshake with headers and subprotocols, masked frames, fragmented
messages, ping/pong, close with code and reason. Not a general client: it
is as strict as a test needs (it checks the accept key and the echoed
subprotocol) and no more.
"""
import base64
import hashlib
import os
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class HandshakeError(Exception):
    def __init__(self, status, headers, body):
        super().__init__(f"websocket upgrade refused: {status} {body[:200]!r}")
        self.status = status
        self.headers = headers
        self.body = body


class Closed(Exception):
    """The server closed: code and reason of its close frame (None when none came)."""

    def __init__(self, code, reason):
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


class WebSocket:
    def __init__(self, host, port, path, headers=None, protocols=None, timeout=10.0,
                 rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # before connect, so the window the server sees is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rbuf = b""
        self.protocol = None
        self.close_code = None
        self.close_reason = None
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        status_line, *hlines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        hdrs = {}
        for h in hlines:
            if ":" in h:
                k, v = h.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if status != 101:
            body = b""
            n = int(hdrs.get("content-length", "0"))
            body = self.rbuf[:n]
            while len(body) < n:
                chunk = self.sock.recv(n - len(body))
                if not chunk:
                    break
                body += chunk
            self.sock.close()
            raise HandshakeError(status, hdrs, body)
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if hdrs.get("sec-websocket-accept") != want:
            raise AssertionError("bad Sec-WebSocket-Accept")
        self.protocol = hdrs.get("sec-websocket-protocol")
        if protocols and self.protocol not in protocols:
            # what the Node ws client (and so the Daytona SDK) refuses
            raise AssertionError(f"server selected no offered subprotocol: {self.protocol!r}")
        self.headers = hdrs

    def _read_until(self, marker):
        while marker not in self.rbuf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed during the handshake")
            self.rbuf += chunk
        i = self.rbuf.index(marker) + len(marker)
        head, self.rbuf = self.rbuf[: i - len(marker)], self.rbuf[i:]
        return head

    def _read_exact(self, n):
        # rbuf is consumed from rpos on, compacted now and then (no copy per frame)
        if not isinstance(self.rbuf, bytearray):
            self.rbuf, self.rpos = bytearray(self.rbuf), 0
        while len(self.rbuf) - self.rpos < n:
            if self.rpos > 1 << 20:
                del self.rbuf[: self.rpos]
                self.rpos = 0
            chunk = self.sock.recv(max(1 << 18, n - (len(self.rbuf) - self.rpos)))
            if not chunk:
                raise Closed(self.close_code, self.close_reason)
            self.rbuf += chunk
        out = bytes(self.rbuf[self.rpos : self.rpos + n])
        self.rpos += n
        return out

    def send_frame(self, opcode, payload, fin=True):
        header = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode())

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def ping(self, payload=b"p"):
        self.send_frame(OP_PING, payload)

    def read_frame(self):
        b0, b1 = self._read_exact(2)
        fin, opcode = b0 & 0x80, b0 & 0x0F
        n = b1 & 0x7F
        if b1 & 0x80:
            raise AssertionError("server frames must not be masked")
        if n == 126:
            (n,) = struct.unpack("!H", self._read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read_exact(8))
        return bool(fin), opcode, self._read_exact(n)

    def recv(self):
        """The next message as (opcode, payload); pongs are returned too.

        Raises Closed when the server's close frame (or EOF) arrives."""
        data, first_op = b"", None
        while True:
            fin, op, payload = self.read_frame()
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.close_code, self.close_reason = code, payload[2:].decode("utf-8", "replace")
                try:
                    self.send_frame(OP_CLOSE, payload[:2])
                except OSError:
                    pass
                raise Closed(self.close_code, self.close_reason)
            if op == OP_PING:
                self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                return op, payload
            if first_op is None:
                first_op = op
            data += payload
            if fin:
                return first_op, data

    def recv_text(self):
        op, data = self.recv()
        assert op == OP_TEXT, f"expected text, got opcode {op}: {data[:100]!r}"
        return data.decode()

    def close(self, code=1000, reason=""):
        try:
            self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())
        except OSError:
            pass
        self.sock.close()


def connect(base_port, path, token=None, protocols=None, headers=None, timeout=10.0,
            rcvbuf=None):
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    return WebSocket("127.0.0.1", base_port, path, hdrs, protocols, timeout, rcvbuf)
