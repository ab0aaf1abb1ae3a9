"""HTTP health and metrics of a running pipeline, and `edgewatch health` as
the container health check, against a port picked free for the test."""

import json
import re
import time

import ewtest


class HttpTest(ewtest.EdgewatchTest):

    NODES = ("gen", "z", "out")

    def start_pipeline(self, port):
        path = self.write_config(self.pipeline(http="127.0.0.1:%d" % port) + """
[source.gen]
plugin = synth
rate = 200
count = 0

[detector.z]
plugin = zscore
input = gen

[sink.out]
plugin = null
input = z
""")
        return self.start("run", path)

    def samples_out(self, body):
        """{node: value} of edgewatch_node_samples_out_total lines in a metrics body."""
        pattern = re.compile(
            r'^edgewatch_node_samples_out_total\{(?:[^}]*,)?node="([^"]+)"[^}]*\}\s+(\S+)$', re.M)
        return {node: float(value) for node, value in pattern.findall(body)}

    def test_health_metrics_and_health_command(self):
        port = ewtest.free_port()
        url = "http://127.0.0.1:%d/health" % port
        proc = self.start_pipeline(port)

        # /health: 200 with every node running.
        _, ctype, body = self.wait_http(proc, port, "/health", timeout=5.0)
        health = json.loads(body)
        self.assertEqual(health.get("status"), "ok", body)
        self.assertIsInstance(health.get("nodes"), dict, body)
        for node in self.NODES:
            self.assertIn(node, health["nodes"], body)
            self.assertEqual(health["nodes"][node].get("state"), "running", body)

        # /metrics: Prometheus text, samples_out per node, growing.
        status, ctype, body = ewtest.http_request(port, "GET", "/metrics")
        self.assertEqual(status, 200, body)
        self.assertTrue(ctype.startswith("text/plain"), ctype)
        first = self.samples_out(body)
        for node in self.NODES:
            self.assertIn(node, first, "no samples_out line for %s in\n%s" % (node, body))
        time.sleep(0.5)
        status, _, body = ewtest.http_request(port, "GET", "/metrics")
        self.assertEqual(status, 200, body)
        second = self.samples_out(body)
        for node in ("gen", "z"):
            self.assertGreater(second.get(node, 0), first[node],
                               "samples_out of %s did not grow\n%s" % (node, body))

        # Nothing else is served.
        status, _, _ = ewtest.http_request(port, "POST", "/health")
        self.assertEqual(status, 405)
        status, _, _ = ewtest.http_request(port, "GET", "/nope")
        self.assertEqual(status, 404)

        # The health command: 0 while it runs, 1 once it is gone.
        self.assertExit(self.cli("health", url, timeout=15), ewtest.EXIT_OK)
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())
        self.assertExit(self.cli("health", url, timeout=15), ewtest.EXIT_RUNTIME)

    def test_health_command_without_server(self):
        url = "http://127.0.0.1:%d/health" % ewtest.free_port()
        self.assertExit(self.cli("health", url, timeout=15), ewtest.EXIT_RUNTIME)


if __name__ == "__main__":
    ewtest.main()
