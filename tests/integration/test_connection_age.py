"""api.max_connection_age jitter differs between processes (issue 12, item 14).

Each process draws its connections' jittered ages (+-10%) from a generator
seeded per process (and per worker loop) with getrandom(2). Before, random()
was never seeded: every process drew the same sequence, so replicas started
together sent GOAWAY at identical ages and their clients reconnected in one
wave. Three processes, one connection each; the age each drew is read from the
debug log line written when the connection reaches it."""
import socket
import time
import unittest

import harness
from harness import Service

PROCESSES = 3


def h2_connect(port):
    """An HTTP/2 connection (preface + empty SETTINGS) that stays open and idle."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    return s


class ConnectionAgeJitterTest(unittest.TestCase):
    def test_three_processes_draw_different_ages(self):
        cfg = ("storage:\n  driver: memory\napi:\n  workers: 1\n  max_connection_age: 2s\n"
               "  idle_timeout: 60s\nlog:\n  level: debug\n  requests: false\n"
               "shutdown:\n  drain_delay: 0s\n")
        services = [Service("metadata", cfg) for _ in range(PROCESSES)]
        socks = []
        try:
            for s in services:
                s.start()
            for s in services:
                socks.append(h2_connect(s.port))
            ages = {}
            deadline = time.monotonic() + 30
            while len(ages) < PROCESSES and time.monotonic() < deadline:
                for i, s in enumerate(services):
                    for line in s.log_lines():
                        if line.get("msg") == "connection reached its maximum age":
                            ages[i] = int(line["max_age_ms"])
                time.sleep(0.1)
            self.assertEqual(len(ages), PROCESSES, "not every connection reached its age: %r"
                             % ages)
            for age in ages.values():
                self.assertGreaterEqual(age, 1800)
                self.assertLessEqual(age, 2200)
            # 401 possible values each: all three equal by chance has odds 1 in 160,801.
            self.assertGreater(len(set(ages.values())), 1,
                               "every process drew the same age: %r" % ages)
        finally:
            for sock in socks:
                sock.close()
            for s in services:
                s.stop()
                s.__exit__()


if __name__ == "__main__":
    unittest.main()
