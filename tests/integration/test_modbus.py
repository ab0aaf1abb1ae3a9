"""The modbus source end to end against a Modbus server we did not write:
Debian's pymodbus (peer_modbus.py), over TCP on loopback and over RTU on a socat
pseudo-terminal pair. Values of every type in every byte/word order must come
out exactly as pymodbus encoded them (after scale and offset); a killed and
restarted server, an exception response and a server that stops answering
(SIGSTOP) must be reported and survived; `edgewatch check` must reject bad maps
with file:line."""

import json
import os
import re
import signal
import time

import ewtest
import peer_modbus

POLL = "100ms"


class ModbusTest(ewtest.EdgewatchTest):

    def setUp(self):
        super().setUp()
        missing = peer_modbus.missing_modules()
        if missing:
            self.fail("the Modbus peer needs Debian packages that are not installed: %s "
                      "(apt-get install %s)" % (", ".join(missing), " ".join(missing)))
        self.out = os.path.join(self.tmp, "out.jsonl")

    # --- helpers -------------------------------------------------------------------

    def rtu_peer(self):
        """A socat pty pair with the pymodbus RTU server on one end, at 19200 baud;
        returns (pty pair, peer)."""
        pty = peer_modbus.PtyPair(self.tmp)
        self.addCleanup(pty.kill)
        pty.start()
        peer = peer_modbus.ModbusPeer(self.tmp, "rtu", pty.a, baud=19200)
        self.addCleanup(peer.kill)
        peer.start()
        return pty, peer

    def tcp_peer(self, port, generation=1):
        peer = peer_modbus.ModbusPeer(self.tmp, "tcp", port, generation)
        self.addCleanup(peer.kill)
        return peer.start()

    def config(self, transport, extra_map="", http="off", **options):
        opts = {"poll": POLL, "timeout": "300ms", "retries": "1"}
        opts.update(options)
        lines = "".join("%s = %s\n" % kv for kv in opts.items())
        return self.write_config(
            self.pipeline(http=http)
            + "\n[source.dev]\nplugin = modbus\n" + transport + lines
            + peer_modbus.map_lines() + extra_map
            + "\n[sink.out]\nplugin = jsonl\ninput = dev\npath = %s\nflush = line\n" % self.out)

    def samples(self):
        if not os.path.exists(self.out):
            return []
        with open(self.out, encoding="utf-8") as f:
            text = f.read()
        # A line being written may be incomplete: only whole lines count.
        return [json.loads(line)["values"] for line in text.splitlines(keepends=True)
                if line.endswith("\n")]

    def wait_samples(self, proc, pred, what, timeout=30.0):
        """Waits until pred(samples) is true; returns the samples."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.samples()
            if pred(got):
                return got
            if not proc.running():
                self.fail("edgewatch exited while waiting for %s\n%s" % (what, proc.output()))
            if time.monotonic() > deadline:
                self.fail("no %s within %ss (%d samples)\n%s" % (what, timeout, len(got), proc.output()))
            time.sleep(0.05)

    def health(self, port):
        try:
            status, _, body = ewtest.http_request(port, "GET", "/health", timeout=1.0)
            return status, json.loads(body)
        except (OSError, ValueError):
            return None, {}

    def wait_retrying(self, proc, port, timeout=30.0):
        """Waits for /health to report the source retrying; returns its error text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.health(port)
            if status == 503 and "dev" in body.get("retrying", []):
                self.assertEqual(body["nodes"]["dev"]["state"], "retrying")
                return body["nodes"]["dev"].get("error", "")
            if not proc.running():
                break
            time.sleep(0.05)
        self.fail("never saw the source retrying in /health\n" + proc.output())

    def wait_healthy(self, proc, port, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.health(port)
            if status == 200:
                return body
            time.sleep(0.05)
        self.fail("/health not 200 again within %ss\n%s" % (timeout, proc.output()))

    def metric(self, port, name):
        status, _, body = ewtest.http_request(port, "GET", "/metrics")
        self.assertEqual(status, 200)
        m = re.search(r'^%s\{node="dev"[^}]*\} (\d+)' % re.escape(name), body, re.M)
        self.assertIsNotNone(m, "no %s in /metrics:\n%s" % (name, body))
        return int(m.group(1))

    def stop_ok(self, proc):
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())
        self.assertNotRegex(proc.stderr(), r"(?i)sanitizer|segmentation|abort")

    def assert_all_values(self, sample, generation=1):
        want = peer_modbus.expected(generation)
        self.assertEqual(list(sample), list(want), "channels are not in map order")
        wrong = {k: (sample[k], v) for k, v in want.items()
                 if sample[k] is None or float(sample[k]) != v}
        self.assertEqual(wrong, {}, "channels whose value differs from pymodbus's (got, want)")

    # --- the tests -----------------------------------------------------------------

    def test_tcp_reads_every_type_and_order_exactly(self):
        port = ewtest.free_port()
        self.tcp_peer(port)
        proc = self.start("run", self.config("host = 127.0.0.1\nport = %d\n" % port))
        got = self.wait_samples(proc, lambda s: len(s) >= 3, "3 samples")
        for sample in got:
            self.assert_all_values(sample)
        self.stop_ok(proc)
        self.assertIn("in 6 read requests", proc.stderr())  # grouped: see peer_modbus's layout

    def test_server_killed_and_restarted_is_retried_and_resumes(self):
        port, http = ewtest.free_port(), ewtest.free_port()
        peer = self.tcp_peer(port, generation=1)
        proc = self.start("run", self.config("host = 127.0.0.1\nport = %d\n" % port,
                                             http="127.0.0.1:%d" % http))
        self.wait_samples(proc, lambda s: len(s) >= 2, "samples from the first server")
        peer.kill()
        error = self.wait_retrying(proc, http)
        self.assertIn("Modbus TCP 127.0.0.1:%d" % port, error)
        before = len(self.samples())
        # Restarted with another generation: new values must appear.
        peer = self.tcp_peer(port, generation=2)
        got = self.wait_samples(proc, lambda s: any(x["generation"] == 2 for x in s[before:]),
                                "samples from the restarted server")
        self.wait_healthy(proc, http)
        self.assertGreaterEqual(self.metric(http, "edgewatch_node_retries_total"), 1)
        self.assertGreaterEqual(self.metric(http, "edgewatch_modbus_reconnects_total"), 1)
        for sample in got:
            self.assertIn(sample["generation"], (1, 2))  # never a partial or wrong sample
            self.assert_all_values(sample, sample["generation"])
        self.stop_ok(proc)
        err = proc.stderr()
        self.assertRegex(err, r"produce failed \(transient, attempt 1\)")
        self.assertIn("recovered after", err)
        self.assertIn("connected again to Modbus TCP", err)

    def test_exception_response_names_register_and_code(self):
        port, http = ewtest.free_port(), ewtest.free_port()
        self.tcp_peer(port)
        edge = peer_modbus.HOLDING_SIZE - 2
        extra = ("register.edge = holding %d\n"          # exists (value EDGE_VALUE)
                 "register.beyond = holding %d float32\n"  # its second register does not
                 "register.far = input 150 uint16\n"       # exists
                 "register.farther = input 5000 uint16\n"  # does not
                 % (edge, edge + 1))
        proc = self.start("run", self.config("host = 127.0.0.1\nport = %d\n" % port, extra,
                                             http="127.0.0.1:%d" % http))
        got = self.wait_samples(proc, lambda s: len(s) >= 3, "3 samples")
        for sample in got:
            # The refused channels are null (NaN), their neighbours keep their values.
            self.assertIsNone(sample["beyond"])
            self.assertIsNone(sample["farther"])
            self.assertEqual(sample["edge"], peer_modbus.EDGE_VALUE)
            self.assertEqual(sample["far"], 0)
            sample = {k: v for k, v in sample.items() if k not in ("edge", "beyond", "far", "farther")}
            self.assert_all_values(sample)
        self.assertGreaterEqual(self.metric(http, "edgewatch_modbus_exceptions_total"), 2)
        status, _ = self.health(http)
        self.assertEqual(status, 200)  # the device answers: not a link fault
        self.stop_ok(proc)
        err = proc.stderr()
        self.assertRegex(err, r"exception 2 \(illegal data address\) reading holding register %d\b"
                         % (edge + 1))
        self.assertRegex(err, r"exception 2 \(illegal data address\) reading input register 5000\b")
        self.assertIn("one by one", err)  # the shared request was split to isolate the bad one

    def test_one_based_addresses(self):
        port = ewtest.free_port()
        self.tcp_peer(port)
        path = self.write_config(
            self.pipeline() + "\n[source.dev]\nplugin = modbus\nhost = 127.0.0.1\nport = %d\n"
            "poll = %s\naddress_base = 1\nregister.generation = holding 1\n"
            "register.f = holding %d float32 CDAB\n"
            "\n[sink.out]\nplugin = jsonl\ninput = dev\npath = %s\n" % (port, POLL, 100 + 2 * 20 + 14 + 1, self.out))
        proc = self.start("run", path)
        got = self.wait_samples(proc, lambda s: len(s) >= 1, "a sample")
        # holding 1 (1-based) is protocol address 0; float32 CDAB is at protocol address
        # 100 + 2 * 20 + 14 (third block of 20 registers, after 1+1+2+2+4+4).
        self.assertEqual(got[0], {"generation": 1, "f": peer_modbus.expected()["float32_CDAB"]})
        self.stop_ok(proc)

    def test_server_that_stops_answering_times_out_and_recovers(self):
        port, http = ewtest.free_port(), ewtest.free_port()
        peer = self.tcp_peer(port)
        proc = self.start("run", self.config("host = 127.0.0.1\nport = %d\n" % port,
                                             http="127.0.0.1:%d" % http, timeout="200ms"))
        self.wait_samples(proc, lambda s: len(s) >= 2, "samples")
        peer.signal(signal.SIGSTOP)
        try:
            error = self.wait_retrying(proc, http)
            self.assertRegex(error, r"stopped answering|no answer|timed out")
            self.assertGreaterEqual(self.metric(http, "edgewatch_modbus_timeouts_total"), 1)
            # The host stays responsive while the device is silent.
            status, _, _ = ewtest.http_request(http, "GET", "/metrics", timeout=2.0)
            self.assertEqual(status, 200)
        finally:
            peer.signal(signal.SIGCONT)
        before = len(self.samples())
        got = self.wait_samples(proc, lambda s: len(s) >= before + 3, "samples after SIGCONT")
        self.wait_healthy(proc, http)
        for sample in got:
            self.assert_all_values(sample)
        self.stop_ok(proc)

    def test_slow_device_within_timeout_skips_polls_but_not_values(self):
        """A device that answers every request 0.1 s late (6 requests: 0.6 s per
        poll) but within timeout: exact samples, skipped poll slots counted and
        logged, no timeout, the node healthy."""
        port, http = ewtest.free_port(), ewtest.free_port()
        peer = self.tcp_peer(port)
        peer.set_delay(0.1)
        proc = self.start("run", self.config("host = 127.0.0.1\nport = %d\n" % port,
                                             http="127.0.0.1:%d" % http, timeout="1s"))
        got = self.wait_samples(proc, lambda s: len(s) >= 3, "3 samples from a slow device")
        for sample in got:
            self.assert_all_values(sample)
        status, body = self.health(http)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["nodes"]["dev"]["state"], "running")
        self.assertGreaterEqual(self.metric(http, "edgewatch_modbus_late_polls_total"), 3)
        self.assertEqual(self.metric(http, "edgewatch_modbus_timeouts_total"), 0)
        self.assertEqual(self.metric(http, "edgewatch_modbus_late_replies_total"), 0)
        self.stop_ok(proc)
        self.assertRegex(proc.stderr(), r"a poll took longer than poll = 0\.100 s: skipped \d+ poll\(s\)")

    def _device_slower_than_timeout(self, transport, peer):
        """The peer answers 0.35 s late against timeout = 200ms: each late reply
        is waited for and discarded (never read as the answer to the repeated
        request), the error says how late the device is and what to change, and
        when the device is fast again exact samples resume."""
        http = ewtest.free_port()
        peer.set_delay(0.35)
        proc = self.start("run", self.config(transport, http="127.0.0.1:%d" % http,
                                             timeout="200ms", retries="1"))
        error = self.wait_retrying(proc, http)
        self.assertRegex(error, r"the device answered after 0\.[3-9]\d* s, later than "
                                r"timeout = 0\.200 s: raise timeout")
        self.assertGreaterEqual(self.metric(http, "edgewatch_modbus_late_replies_total"), 1)
        self.assertGreaterEqual(self.metric(http, "edgewatch_modbus_timeouts_total"), 2)
        self.assertEqual(self.samples(), [], "a sample was emitted while every read timed out")
        peer.set_delay(0)
        got = self.wait_samples(proc, lambda s: len(s) >= 3, "samples once the device is fast again")
        self.wait_healthy(proc, http)
        for sample in got:
            self.assert_all_values(sample)  # never a reply taken for another request's
        self.stop_ok(proc)
        self.assertIn("recovered after", proc.stderr())

    def test_device_slower_than_timeout_over_tcp(self):
        port = ewtest.free_port()
        peer = self.tcp_peer(port)
        self._device_slower_than_timeout("host = 127.0.0.1\nport = %d\n" % port, peer)

    def test_device_slower_than_timeout_over_rtu(self):
        """RTU has no transaction id: only discarding the late reply keeps it from
        being taken as the answer to the next request."""
        pty, peer = self.rtu_peer()
        self._device_slower_than_timeout("device = %s\nbaud = 19200\n" % pty.b, peer)

    def test_rtu_over_a_pty_pair_reads_the_same_values(self):
        pty, _ = self.rtu_peer()
        proc = self.start("run", self.config(
            "device = %s\nbaud = 19200\nparity = none\ndata_bits = 8\nstop_bits = 1\n" % pty.b,
            timeout="1s", retries="2"))
        got = self.wait_samples(proc, lambda s: len(s) >= 3, "3 samples over RTU")
        for sample in got:
            self.assert_all_values(sample)
        self.stop_ok(proc)
        self.assertIn("connected to Modbus RTU %s 19200 8N1 unit 1" % pty.b, proc.stderr())

    def test_check_rejects_overlapping_and_impossible_maps(self):
        cases = [
            ("register.b = holding 101 float32", "overlaps register.a (holding 100, float32, line"),
            ("register.b = coil 3 float32", "type float32 is impossible in the coil table"),
            ("register.b = holding 65535 int32", "past the last address 65535"),
            ("register.b = holding 7 float32 sacle=2", 'unknown word "sacle=2"'),
        ]
        for bad, message in cases:
            path = self.write_config(
                self.pipeline() + "\n[source.dev]\nplugin = modbus\nhost = 127.0.0.1\n"
                "register.a = holding 100 float32\n" + bad + "\n"
                "\n[sink.out]\nplugin = jsonl\ninput = dev\n")
            result = self.cli("check", path)
            self.assertExit(result, ewtest.EXIT_USAGE)
            where = "%s:%d:" % (path, self.line_of(path, bad))
            self.assertIn(where, result.stderr)
            self.assertIn(message, result.stderr)
            self.assertIn("register.b", result.stderr)
        # And a good map passes.
        path = self.write_config(self.pipeline() + "\n[source.dev]\nplugin = modbus\nhost = 127.0.0.1\n"
                                 + peer_modbus.map_lines() + "\n[sink.out]\nplugin = jsonl\ninput = dev\n")
        self.assertExit(self.cli("check", path), ewtest.EXIT_OK)


if __name__ == "__main__":
    ewtest.main()
