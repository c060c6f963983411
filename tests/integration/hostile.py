"""Hostile and stuck clients for the server runtime (issue 12, items 1-4): raw
HTTP/1.1 sockets and hand-built HTTP/2 frames, plus the process measurements
(RSS from /proc/PID/status, CPU seconds from /proc/PID/stat).

Used by test_hostile_clients.py, and runnable on its own to measure a binary
(before/after figures):

  /usr/bin/python3 tests/integration/hostile.py --bin-dir build/bin ATTACK
  ATTACK: h1-pipeline | h2-noread | h2-bodies | hpack | all

`--legacy` leaves out the configuration keys a binary older than these limits
does not know (it then runs with its defaults).
Everything stays on 127.0.0.1; every wait is bounded.
"""
import os
import select
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# ---- process measurements ----


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def sanitized(pid):
    """True for an AddressSanitizer build: its allocator keeps freed memory in a
    quarantine and its shadow memory, so RSS says nothing about our buffers."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_settled(pid, timeout=30.0, quiet=1.0, last_only=False):
    """Poll RSS and CPU until neither moved for `quiet` seconds (bounded by
    `timeout`); returns the largest RSS seen, in KiB (the last one with last=True)."""
    deadline = time.monotonic() + timeout
    last = (rss_kib(pid), cpu_seconds(pid))
    peak = last[0]
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)  # polling interval of a bounded wait, not synchronisation
        now = (rss_kib(pid), cpu_seconds(pid))
        peak = max(peak, now[0])
        if abs(now[0] - last[0]) > 256 or now[1] != last[1]:
            still_since = time.monotonic()
            last = now
        elif time.monotonic() - still_since >= quiet:
            break
    return rss_kib(pid) if last_only else peak


# ---- raw sockets ----


def connect(port, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    return s


def send_bounded(s, data, timeout=5.0):
    """Send as much of `data` as the peer takes within `timeout`; returns bytes sent."""
    s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + timeout
    while sent < len(data) and time.monotonic() < deadline:
        _, w, _ = select.select([], [s], [], max(0.0, deadline - time.monotonic()))
        if not w:
            break
        try:
            sent += s.send(data[sent:sent + 65536])
        except BlockingIOError:
            continue
        except OSError:
            break
    return sent


def wait_reset(socks, timeout):
    """Wait until every socket saw its peer close or reset it; returns how many did."""
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLRDHUP | select.POLLERR | select.POLLHUP)
    done = set()
    deadline = time.monotonic() + timeout
    while len(done) < len(socks) and time.monotonic() < deadline:
        for fd, ev in p.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            if ev & (select.POLLRDHUP | select.POLLERR | select.POLLHUP):
                done.add(fd)
                p.unregister(fd)
    return len(done)


# ---- HTTP/2 frames ----

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 3, 4, 6, 7, 8, 9)
END_STREAM, ACK, END_HEADERS = 1, 1, 4
ENHANCE_YOUR_CALM = 11


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def hpack_int(value, prefix_bits, first):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value, index=False):
    """A literal header field with a literal name, no Huffman: without indexing
    (the dynamic table is untouched) or with incremental indexing."""
    first = 0x40 if index else 0x00
    name, value = name.encode(), value.encode()
    return bytes([first]) + hpack_int(len(name), 7, 0) + name + hpack_int(len(value), 7, 0) + \
        value


def grpc_headers(path, authority="localhost"):
    return b"".join(hpack_literal(n, v) for n, v in (
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority),
        ("content-type", "application/grpc"), ("te", "trailers")))


def grpc_message(body):
    return b"\x00" + struct.pack(">I", len(body)) + body


def get_metadata_request(movie_id):
    mid = movie_id.encode()
    return grpc_message(b"\x0a" + bytes([len(mid)]) + mid)


class FrameReader:
    """Parses the server's frames from a socket; keeps what tests look at."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.resets = {}      # stream id -> error code of its first RST_STREAM
        self.reset_frames = []  # (stream id, error code) of every RST_STREAM
        self.statuses = {}    # stream id -> {header: value} of every HEADERS frame it got
        import hpack
        self.decoder = hpack.Decoder()
        self.goaway = None    # error code
        self.window_updates = {}  # stream id -> total increment
        self.closed = False
        self.settings_seen = False
        self.initial_window = 65535

    def pump(self, timeout):
        """Read what arrives within `timeout`; returns the frames parsed."""
        frames = []
        if self.closed:
            return frames
        r, _, _ = select.select([self.sock], [], [], timeout)
        if r:
            try:
                data = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self.closed = True
            elif data:
                self.buf += data
        while len(self.buf) >= 9:
            length = struct.unpack(">I", b"\x00" + self.buf[:3])[0]
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7fffffff
            payload = self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            frames.append((ftype, flags, sid, payload))
            if ftype == RST_STREAM:
                self.resets.setdefault(sid, struct.unpack(">I", payload[:4])[0])
                self.reset_frames.append((sid, struct.unpack(">I", payload[:4])[0]))
            elif ftype == GOAWAY:
                self.goaway = struct.unpack(">I", payload[4:8])[0]
            elif ftype == HEADERS:
                # The server sends neither padding nor priority, nor CONTINUATION.
                fields = self.decoder.decode(payload)
                self.statuses.setdefault(sid, {}).update(
                    {k.decode() if isinstance(k, bytes) else k:
                     v.decode() if isinstance(v, bytes) else v for k, v in fields})
            elif ftype == WINDOW_UPDATE:
                inc = struct.unpack(">I", payload[:4])[0] & 0x7fffffff
                self.window_updates[sid] = self.window_updates.get(sid, 0) + inc
            elif ftype == SETTINGS and not flags & ACK:
                self.settings_seen = True
                for k in range(0, len(payload) - 5, 6):
                    key, val = struct.unpack(">HI", payload[k:k + 6])
                    if key == 4:  # SETTINGS_INITIAL_WINDOW_SIZE
                        self.initial_window = val
                try:
                    self.sock.sendall(frame(SETTINGS, ACK, 0))
                except OSError:
                    pass
        return frames


def h2_connect(port, rcvbuf=None, window=None):
    s = connect(port, rcvbuf)
    settings = b""
    if window:
        settings = struct.pack(">HI", 4, window)  # SETTINGS_INITIAL_WINDOW_SIZE
    s.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))
    if window:
        s.sendall(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", window - 65535)))
    return s


def grpc_status_of(fields):
    """grpc-status (an int) from the headers a stream got, or None."""
    v = (fields or {}).get("grpc-status")
    return int(v) if v is not None else None


# ---- attacks ----


def attack_h1_pipeline(port, conns=8, path="/metrics", nbytes=64 * 1024):
    """Item 1, HTTP/1.1: pipelined GETs from clients that never read."""
    req = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode()
    payload = req * (nbytes // len(req))
    socks, sent = [], 0
    for _ in range(conns):
        s = connect(port, rcvbuf=4096)
        sent += send_bounded(s, payload, timeout=3)
        socks.append(s)
    return socks, sent


def attack_h2_noread(port, conns=8, streams=1000, movie_id="big"):
    """Item 1, HTTP/2: a client that opens its windows and never reads."""
    socks, sent = [], 0
    body = get_metadata_request(movie_id)
    for _ in range(conns):
        s = h2_connect(port, rcvbuf=4096, window=(1 << 31) - 1)
        out = []
        for i in range(streams):
            sid = 1 + 2 * i
            out.append(frame(HEADERS, END_HEADERS, sid, grpc_headers(
                "/MetadataService/GetMetadata")))
            out.append(frame(DATA, END_STREAM, sid, body))
        data = b"".join(out)
        sent += send_bounded(s, data, timeout=3)
        socks.append(s)
    return socks, sent


def attack_h2_bodies(port, streams=60, message_bytes=4 * 1024 * 1024 - 16, timeout=60):
    """Item 2: requests whose body stops one byte short.
    Returns (socket, reader, bytes sent)."""
    s = h2_connect(port)
    rd = FrameReader(s)
    sent, sent_on = 0, {}
    deadline = time.monotonic() + timeout
    prefix = b"\x00" + struct.pack(">I", message_bytes)
    last_ping = time.monotonic()
    for i in range(streams):
        sid = 1 + 2 * i
        s.sendall(frame(HEADERS, END_HEADERS, sid,
                        grpc_headers("/MetadataService/PutMetadata")))
        sent_on[sid] = 0
        todo = 5 + message_bytes - 1
        while todo > 0 and time.monotonic() < deadline:
            if sid in rd.resets or rd.goaway is not None or rd.closed:
                break
            rd.pump(0)
            conn_window = 65535 + rd.window_updates.get(0, 0) - sent
            stream_window = rd.initial_window + rd.window_updates.get(sid, 0) - sent_on[sid]
            n = min(todo, 16384, conn_window, stream_window)
            if n <= 0:
                rd.pump(0.05)
                continue
            chunk = (prefix + b"\x00" * (n - 5)) if sent_on[sid] == 0 else b"\x00" * n
            try:
                s.sendall(frame(DATA, 0, sid, chunk))
            except OSError:
                rd.closed = True
                break
            sent += n
            sent_on[sid] += n
            todo -= n
        if rd.goaway is not None or rd.closed:
            break
    return s, rd, sent


def attack_hpack(port, streams=20, entry_bytes=4000, continuations=8):
    """Item 3: HEADERS + CONTINUATION frames of 1-byte references to one big
    dynamic-table entry. Returns (socket, reader, bytes sent)."""
    s = h2_connect(port)
    rd = FrameReader(s)
    sent = 0
    refs = b"\xbe" * 16384  # indexed field 62: the entry added below
    for i in range(streams):
        sid = 1 + 2 * i
        block = grpc_headers("/MetadataService/GetMetadata")
        if i == 0:
            block += hpack_literal("x-pad", "a" * entry_bytes, index=True)
        data = frame(HEADERS, 0, sid, block + refs[:16384 - len(block)])
        for k in range(continuations):
            last = k == continuations - 1
            data += frame(CONTINUATION, END_HEADERS if last else 0, sid, refs)
        data += frame(DATA, END_STREAM, sid, get_metadata_request("m"))
        n = send_bounded(s, data, timeout=10)
        sent += n
        rd.pump(0)
        if n < len(data):
            break
    return s, rd, sent


# ---- stand-alone measurement ----


NEW_KEYS = ("max_output_bytes", "write_timeout", "header_timeout", "request_timeout",
            "max_connection_request_bytes", "max_process_request_bytes")


def legacy_config(config):
    """`config` without the keys a binary older than these limits refuses."""
    return "".join(line + "\n" for line in config.splitlines()
                   if not any(k in line for k in NEW_KEYS))


def measure(attack, bin_dir, legacy):
    os.environ["MOVIE_BIN_DIR"] = bin_dir
    import harness
    harness.BIN_DIR = bin_dir
    cfg = ("storage:\n  driver: memory\napi:\n  workers: 2\n"
           "  write_timeout: 5s\nshutdown:\n  drain_delay: 0s\n")
    if legacy:
        cfg = legacy_config(cfg)
    with harness.Service("metadata", cfg) as svc:
        svc.start()
        pid = svc.proc.pid
        if attack == "h2-noread":
            svc.http("PUT", "/metadata", body='{"id":"big","title":"t","description":"%s"}'
                     % ("d" * 16384))
        rss0, cpu0 = wait_settled(pid), cpu_seconds(pid)
        # /healthz latency while the attack runs (a second client's view).
        worst = [0.0]
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                t = time.monotonic()
                try:
                    svc.http("GET", "/healthz", timeout=10)
                except OSError:
                    pass
                worst[0] = max(worst[0], time.monotonic() - t)
                stop.wait(0.05)
        prober = threading.Thread(target=probe)
        prober.start()
        t0 = time.monotonic()
        if attack == "h1-pipeline":
            socks, sent = attack_h1_pipeline(svc.port)
            keep = socks
        elif attack == "h2-noread":
            socks, sent = attack_h2_noread(svc.port)
            keep = socks
        elif attack == "h2-bodies":
            sock, rd, sent = attack_h2_bodies(svc.port)
            keep = [sock]
        elif attack == "hpack":
            sock, rd, sent = attack_hpack(svc.port)
            keep = [sock]
        rss1 = wait_settled(pid)
        cpu1 = cpu_seconds(pid)
        stop.set()
        prober.join()
        print("%-12s sent %9d bytes in %.1fs; RSS %6.1f -> %6.1f MiB (+%.1f); CPU %.2f s; "
              "worst /healthz %.3f s"
              % (attack, sent, time.monotonic() - t0, rss0 / 1024, rss1 / 1024,
                 (rss1 - rss0) / 1024, cpu1 - cpu0, worst[0]), flush=True)
        for s in keep:
            s.close()
        rss2 = wait_settled(pid, last_only=True)
        print("%-12s after close: RSS %.1f MiB" % (attack, rss2 / 1024), flush=True)
        svc.stop()


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default=os.path.join(HERE, "..", "..", "build", "bin"))
    ap.add_argument("--legacy", action="store_true")
    ap.add_argument("attack", choices=["h1-pipeline", "h2-noread", "h2-bodies", "hpack", "all"])
    a = ap.parse_args(argv)
    attacks = ["h1-pipeline", "h2-noread", "h2-bodies", "hpack"] if a.attack == "all" \
        else [a.attack]
    for attack in attacks:
        measure(attack, os.path.abspath(a.bin_dir), a.legacy)


if __name__ == "__main__":
    main(sys.argv[1:])
