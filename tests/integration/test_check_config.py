"""--check-config runs every check start-up runs, and reports every error of a
file (issue 12 item 12): the real binaries, inline YAML files, loopback only."""
import os
import re
import subprocess
import tempfile
import unittest

import harness
from harness import Service

BAD_PEERS = [":99999", "host:0", "[a:1]", "127.0.0.1:99999", "nohost", "[::1", "[zz]:80",
             "h:80x", ""]


def check_config(program, files, env=None):
    """PROGRAM --check-config FILES...; (status, stderr). The test environment's
    own variables with the program's prefix (MOVIE_BIN_DIR...) are dropped, as
    harness.Service does: the prefix is reserved for options."""
    prefix = program.upper() + "_"
    args = [os.path.join(harness.BIN_DIR, program)]
    for f in files:
        args += ["--config", f]
    e = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
    e.update(env or {})
    p = subprocess.run(args + ["--check-config"], capture_output=True, env=e, timeout=30)
    return p.returncode, p.stderr.decode()


def write(text):
    fd, path = tempfile.mkstemp(suffix=".yaml", prefix="check-config-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def error_lines(stderr, program):
    """The error lines of a refused config: 'program: file:line:column: key: message'."""
    return [l for l in stderr.splitlines() if l.startswith(program + ": ") and "valid" not in l]


class DefaultPortTest(unittest.TestCase):
    """services/services.txt is the one place a default port is written: each
    binary's api.port default, and movie's default peer addresses, are it."""

    def print_config(self, program):
        prefix = program.upper() + "_"
        env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
        p = subprocess.run([os.path.join(harness.BIN_DIR, program), "--print-config"],
                           capture_output=True, env=env, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return p.stdout.decode()

    def test_defaults_are_the_list(self):
        for program, (_, port) in harness.SERVICES.items():
            text = self.print_config(program)
            self.assertRegex(text, r"(?m)^api:\n(?:  .*\n)*?  port: %d$" % port, program)
        movie = self.print_config("movie")
        for peer in ("metadata", "rating"):
            self.assertRegex(movie, r'(?m)^  %s:\n    addresses:\n      - "127\.0\.0\.1:%d"$'
                             % (peer, harness.SERVICES[peer][1]))


class RatingRangeTest(unittest.TestCase):
    def test_min_greater_than_max_fails_the_check(self):
        path = write("rating:\n  min_value: 5\n  max_value: 1\n")
        rc, err = check_config("rating", [path])
        self.assertEqual(rc, 1, err)
        self.assertNotIn("configuration is valid", err)
        # Positioned at the value that made the pair wrong.
        self.assertIn(path + ":2:14: rating.min_value:", err)
        self.assertIn("rating.max_value (1)", err)

    def test_env_layer_is_checked_too(self):
        path = write("rating:\n  min_value: 2\n")
        rc, err = check_config("rating", [path], env={"RATING_RATING_MAX_VALUE": "1"})
        self.assertEqual(rc, 1, err)
        self.assertIn("rating.min_value", err)
        rc, err = check_config("rating", [path], env={"RATING_RATING_MAX_VALUE": "2"})
        self.assertEqual(rc, 0, err)

    def test_broker_addresses_are_checked(self):
        path = write("kafka:\n  brokers: [\"127.0.0.1:99999\"]\n")
        rc, err = check_config("rating", [path])
        self.assertEqual(rc, 1, err)
        self.assertIn(path + ":2:13: kafka.brokers: item 1:", err)


class PeerAddressTest(unittest.TestCase):
    def test_each_bad_address_fails_the_check_with_its_position(self):
        for addr in BAD_PEERS:
            path = write("peers:\n  metadata:\n    addresses: [\"127.0.0.1:8081\", \"%s\"]\n" % addr)
            rc, err = check_config("movie", [path])
            self.assertEqual(rc, 1, "%r: %s" % (addr, err))
            self.assertIn(path + ":3:35: peers.metadata.addresses: item 2", err, addr)

    def test_bad_address_from_env_fails_the_check(self):
        path = write("")
        rc, err = check_config(
            "movie", [path], env={"MOVIE_PEERS_RATING_ADDRESSES": "127.0.0.1:8082,host:0"})
        self.assertEqual(rc, 1, err)
        self.assertIn("env MOVIE_PEERS_RATING_ADDRESSES: peers.rating.addresses", err)

    def test_empty_peer_list_fails_the_check(self):
        path = write("peers:\n  rating:\n    addresses: []\n")
        rc, err = check_config("movie", [path])
        self.assertEqual(rc, 1, err)
        self.assertIn(path + ":3:16: peers.rating.addresses:", err)

    def test_good_addresses_pass(self):
        path = write("peers:\n  metadata:\n    addresses: [\"metadata-headless:8081\", "
                     "\"[::1]:8081\", \"10.0.0.1:1\"]\n  rating:\n"
                     "    addresses: [\"rating.ns.svc.cluster.local:65535\"]\n")
        rc, err = check_config("movie", [path])
        self.assertEqual(rc, 0, err)

    def test_service_refuses_to_start_on_a_bad_address(self):
        """Before: the service started, /readyz said 200 and every /movie was 503
        "cannot create peer channels" with no log line."""
        with Service("movie", "peers:\n  metadata:\n    addresses: [\"host:0\"]\n") as svc:
            svc.start(wait_ready=False)
            self.assertEqual(svc.proc.wait(10), 1)
            self.assertIn("peers.metadata.addresses", svc.logs())


class AllErrorsTest(unittest.TestCase):
    def test_every_error_of_a_file_is_reported(self):
        path = write("api:\n  prot: 1\n  port: 70000\nlog:\n  level: verbose\n"
                     "peers:\n  rating:\n    addresses: [\"nohost\"]\n  timeout: soon\n")
        rc, err = check_config("movie", [path])
        self.assertEqual(rc, 1, err)
        lines = error_lines(err, "movie")
        want = [path + ":2:3: api.prot:", path + ":3:9: api.port:", path + ":5:10: log.level:",
                path + ":8:17: peers.rating.addresses:", path + ":9:12: peers.timeout:"]
        for w in want:
            self.assertTrue(any(w in l for l in lines), "%s not in %s" % (w, lines))
        self.assertEqual(len(lines), len(want), lines)

    def test_errors_of_every_file_and_the_environment(self):
        a = write("api:\n  prot: 1\n")
        b = write("log:\n  level: loud\n")
        rc, err = check_config("metadata", [a, b], env={"METADATA_API_PORT": "0"})
        self.assertEqual(rc, 1, err)
        self.assertIn(a + ":2:3: api.prot", err)
        self.assertIn(b + ":2:10: log.level", err)
        self.assertIn("env METADATA_API_PORT", err)

    def test_errors_are_bounded(self):
        text = "".join("k%d: 1\n" % i for i in range(200))
        path = write(text)
        rc, err = check_config("metadata", [path])
        self.assertEqual(rc, 1)
        lines = error_lines(err, "metadata")
        self.assertEqual(len([l for l in lines if re.search(r":\d+:1: k\d+: unknown key", l)]), 50,
                         lines[:3])
        self.assertIn("150 more errors not shown", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
