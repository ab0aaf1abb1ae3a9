"""HTTP health and metrics of a running pipeline, and `edgewatch health` as
the container health check, against a port picked free for the test."""

import json
import re
import socket
import threading
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


    def test_metrics_show_the_resident_memory(self):
        """Issue 14 item 16: the process's RSS is a gauge, close to what the kernel says."""
        port = ewtest.free_port()
        proc = self.start_pipeline(port)
        self.wait_http(proc, port, "/health", timeout=5.0)
        _, _, body = ewtest.http_request(port, "GET", "/metrics")
        self.assertIn("# TYPE edgewatch_process_resident_bytes gauge", body)
        found = re.search(r"^edgewatch_process_resident_bytes (\d+)$", body, re.M)
        self.assertIsNotNone(found, body)
        with open("/proc/%d/status" % proc.pid, encoding="ascii") as f:
            vmrss = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024
        rss = int(found.group(1))
        self.assertGreater(rss, 1 << 20)
        self.assertLess(abs(rss - vmrss), max(vmrss // 2, 4 << 20), (rss, vmrss))
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())

    @staticmethod
    def timed_health(port, source, timeout):
        """GET /health from the loopback address `source`; returns (status, seconds) or
        (None, seconds) when no answer came within `timeout`."""
        start = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                          source_address=(source, 0)) as s:
                s.settimeout(max(0.01, timeout - (time.monotonic() - start)))
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return None, time.monotonic() - start
        spent = time.monotonic() - start
        m = re.match(rb"HTTP/1\.\d (\d+)", data)
        return (int(m.group(1)) if m else None), spent

    def test_health_answers_while_50_slow_clients_hold_connections(self):
        """Issue 14 item 8: 50 real sockets from ten other loopback addresses (five
        each, under the per-client limit) send a request one byte every 0.3 s, well
        inside the idle timeout, and reconnect whenever the server cuts them. The
        health check from 127.0.0.1 must answer within 1 s every time."""
        port = ewtest.free_port()
        proc = self.start_pipeline(port)
        self.wait_http(proc, port, "/health", timeout=5.0)
        stop = threading.Event()
        cut = [0]

        def slow_client(source):
            payload = b"GET /health HTTP/1.1\r\nX-Slow: " + b"a" * 4000
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2,
                                                  source_address=(source, 0)) as s:
                        for i in range(len(payload)):
                            s.sendall(payload[i:i + 1])
                            if stop.wait(0.3):
                                return
                except OSError:
                    cut[0] += 1
                    stop.wait(0.2)

        threads = [threading.Thread(target=slow_client, args=("127.0.0.%d" % (2 + i % 10),), daemon=True)
                   for i in range(50)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.5)  # every slow client has connected and sent bytes
            for attempt in range(8):
                status, spent = self.timed_health(port, "127.0.0.1", 1.0)
                self.assertEqual(status, 200, "attempt %d: no answer within 1 s (%.2f s)\n%s" % (
                    attempt, spent, proc.output()))
                time.sleep(0.4)
        finally:
            stop.set()
            for t in threads:
                t.join(5)
        self.assertGreater(cut[0], 0, "no slow client was ever cut off")
        self.assertTrue(proc.running(), proc.output())
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())


if __name__ == "__main__":
    ewtest.main()
