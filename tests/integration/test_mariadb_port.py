"""scripts/test-mariadb.sh start-free, which scripts/test.sh uses: the throwaway
MariaDB of `make test` gets a port no other process holds, even one bound and
not yet listening (another ctest run's server starting, which a connect probe
does not see), and a start that fails moves on to the next port. Real mariadbd."""
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

import harness

SCRIPT = os.path.join(harness.SOURCE_DIR, "scripts", "test-mariadb.sh")


class StartFreeTest(unittest.TestCase):
    def test_skips_bound_and_listening_ports(self):
        harness.require_program(self, "mariadbd", "mariadb-server")
        # Two consecutive ports below 32768 held by this test: one bound only
        # (the case the old /dev/tcp probe missed), one listening.
        bound = socket.socket()
        listening = socket.socket()
        first = None
        for base in range(24700, 25700, 3):
            try:
                bound.bind(("127.0.0.1", base))
            except OSError:
                continue
            try:
                listening.bind(("127.0.0.1", base + 1))
            except OSError:
                bound.close()
                bound = socket.socket()
                continue
            listening.listen(1)
            first = base
            break
        self.assertIsNotNone(first, "no two free ports in 24700..25700")
        parent = tempfile.mkdtemp(prefix="movie-test-mariadb-port-")
        datadir = os.path.join(parent, "db")
        try:
            p = subprocess.run([SCRIPT, "start-free", datadir, str(first)],
                               capture_output=True, timeout=180)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            port = int(p.stdout.decode().strip())
            self.assertGreaterEqual(port, first + 2)
            ping = subprocess.run(["mariadb-admin", "--no-defaults", "-h127.0.0.1",
                                   "-P%d" % port, "-umovie", "-pmovie", "--connect-timeout=5",
                                   "ping"], capture_output=True, timeout=30)
            self.assertEqual(ping.returncode, 0, ping.stderr.decode())
        finally:
            subprocess.run([SCRIPT, "stop", datadir], timeout=60)
            bound.close()
            listening.close()
            shutil.rmtree(parent, ignore_errors=True)
            shutil.rmtree(datadir + ".tmp", ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
