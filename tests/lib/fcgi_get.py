#!/usr/bin/env python3
"""fcgi_get.py SOCKET URI: one FastCGI GET straight to a responder's unix
socket (no web server in between), the response (headers and body) on
stdout. The metrics suite uses it to scrape each process of a lighttpd
max-procs pool in turn."""
import socket
import struct
import sys


def record(kind, content, request_id=1):
    return struct.pack(">BBHHBB", 1, kind, request_id, len(content), 0, 0) + content


def pair(name, value):
    out = b""
    for s in (name, value):
        n = len(s)
        out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return out + name + value


def main():
    path, uri = sys.argv[1], sys.argv[2]
    params = {"REQUEST_METHOD": "GET", "REQUEST_URI": uri, "SCRIPT_NAME": uri,
              "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": "0"}
    body = b"".join(pair(k.encode(), v.encode()) for k, v in params.items())
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(record(1, struct.pack(">HB5x", 1, 0)) + record(4, body) + record(4, b"")
              + record(5, b""))
    data, out = b"", b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    while len(data) >= 8:
        _, kind, _, length, padding, _ = struct.unpack(">BBHHBB", data[:8])
        if kind == 6:
            out += data[8:8 + length]
        data = data[8 + length + padding:]
        if kind == 3:
            break
    sys.stdout.buffer.write(out)


main()
