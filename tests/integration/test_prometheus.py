"""A real Prometheus server scrapes a real service: the exposition is accepted
end to end (not only by promtool) and the gRPC metrics are queryable."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import harness
from harness import Service


class PrometheusScrapeTest(unittest.TestCase):
    def test_scraped(self):
        harness.require_program(self, "prometheus", "prometheus")
        with Service("metadata", "storage:\n  driver: memory\nshutdown:\n  drain_delay: 0s\n") as svc:
            svc.start()
            # Some traffic so the request families have samples.
            svc.http("GET", "/metadata?id=nope")
            workdir = tempfile.mkdtemp(prefix="movie-prom-")
            port = harness.free_port()
            cfg = os.path.join(workdir, "prometheus.yml")
            with open(cfg, "w") as f:
                f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                        "scrape_configs:\n  - job_name: metadata\n    static_configs:\n"
                        "      - targets: ['127.0.0.1:%d']\n" % svc.port)
            prom = subprocess.Popen(
                ["prometheus", "--config.file=" + cfg, "--storage.tsdb.path=" + workdir + "/data",
                 "--web.listen-address=127.0.0.1:%d" % port],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                def query(q):
                    url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (port, urllib.parse.quote(q))
                    with urllib.request.urlopen(url, timeout=2) as r:
                        return json.load(r)["data"]["result"]
                up = None
                deadline = time.monotonic() + 60  # the first scrape may take ~15 s
                while time.monotonic() < deadline:
                    try:
                        up = query('up{job="metadata"}')
                        if up and up[0]["value"][1] == "1":
                            break
                    except OSError:
                        pass
                    time.sleep(0.5)
                self.assertTrue(up and up[0]["value"][1] == "1", up)
                build = query('movie_build_info{job="metadata"}')
                self.assertEqual(build[0]["metric"]["service"], "metadata")
                handled = query('http_requests_total{job="metadata",handler="/metadata",code="404"}')
                self.assertGreaterEqual(float(handled[0]["value"][1]), 1)
                families = query('count by (__name__) ({job="metadata",__name__=~"grpc_server_.*"})')
                names = {r["metric"]["__name__"] for r in families}
                self.assertIn("grpc_server_handled_total", names)
                self.assertIn("grpc_server_handling_seconds_bucket", names)
            finally:
                prom.terminate()
                prom.wait(30)
                shutil.rmtree(workdir, ignore_errors=True)
            self.assertEqual(svc.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
