"""The serial source end to end against socat pseudo-terminal pairs: a Python
writer on one end sends each format, malformed, overlong and binary lines;
edgewatch (serial -> jsonl file) reads the other end. Killing socat is the
device disappearing (retrying in /health); starting it again under the same
link names brings it back and reading resumes."""

import json
import os
import re

import ewtest
import peer_serial


def metric(body, name, node):
    m = re.search(r'^edgewatch_%s_total\{node="%s"\} (\d+)$' % (name, node), body, re.M)
    return int(m.group(1)) if m else None


class SerialTest(ewtest.EdgewatchTest):

    def setUp(self):
        super().setUp()
        self.pair = peer_serial.SocatPair(self.tmp).start()
        self.addCleanup(self.pair.stop)
        self.out = os.path.join(self.tmp, "out.jsonl")
        self.port = ewtest.free_port()

    def run_serial(self, options):
        path = self.write_config(self.pipeline(http="127.0.0.1:%d" % self.port, linger="0") + """
[source.dev]
plugin = serial
device = %s
baud = 115200
%s

[sink.out]
plugin = jsonl
input = dev
path = %s
flush = line
""" % (self.pair.b, options, self.out))
        self.assertExit(self.cli("check", path), ewtest.EXIT_OK)
        proc = self.start("run", path)
        self.wait_for(lambda: "opened at 115200 baud" in proc.stderr(), proc, "device opened")
        return proc

    def lines_out(self):
        return ewtest.whole_json_lines(self.out)

    def wait_lines(self, proc, n):
        self.wait_for(lambda: len(self.lines_out()) >= n, proc, "%d output lines" % n)
        out = self.lines_out()
        self.assertEqual(len(out), n, out)
        return out

    def metrics(self):
        status, _, body = ewtest.http_request(self.port, "GET", "/metrics")
        self.assertEqual(status, 200)
        return body

    def finish(self, proc):
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())
        return proc.stderr()

    def test_csv_with_bad_overlong_and_binary_lines(self):
        proc = self.run_serial("""format = csv
columns = time, temp, pressure
timestamp_field = time
max_line = 64""")
        self.pair.write(
            b"2026-11-26T16:35:03.250Z,71.5,2.03\r\n"
            b"1764174904,-0.5,\n"                    # epoch seconds, empty = missing
            b"2026-11-26T16:35:05Z,1,2,3\n"          # wrong field count
            b"2026-11-26T16:35:05Z,hot,2\n"          # not a number
            b"\x00\xff\xfe\x01garbage\x02\n"          # binary
            + b"9" * 500 + b"\n"                     # overlong, discarded to the newline
            b"1764174906000,3,4\n")                  # epoch ms
        out = self.wait_lines(proc, 3)
        self.assertEqual([o["ts"] for o in out], [
            "2026-11-26T16:35:03.250000Z", "2025-11-26T16:35:04.000000Z",
            "2025-11-26T16:35:06.000000Z"])
        self.assertEqual(out[0]["values"], {"temp": 71.5, "pressure": 2.03})
        self.assertEqual(out[1]["values"], {"temp": -0.5, "pressure": None})
        self.assertEqual(out[2]["values"], {"temp": 3, "pressure": 4})
        body = self.metrics()
        self.assertEqual(metric(body, "serial_bad_lines", "dev"), 4, body)
        self.assertEqual(metric(body, "serial_overlong_lines", "dev"), 1, body)
        self.assertEqual(metric(body, "serial_lines", "dev"), 7, body)
        err = self.finish(proc)
        self.assertIn("7 lines read, 4 bad lines skipped (1 overlong)", err)
        self.assertIn("4 fields, expected 3", err)
        self.assertIn('"hot" is not a number', err)
        self.assertIn("control byte 0x00", err)

    def test_kv_lines(self):
        proc = self.run_serial("""format = kv
channels = weight, temp""")
        self.pair.write(b"weight=12.5 temp=21\n"
                        b"temp=22;weight=13.25\n"
                        b"weight=14, unit=kg\n"
                        b"hello\n"
                        b"unit=kg\n"
                        b"weight=1e3 temp=-4\n")
        out = self.wait_lines(proc, 4)
        self.assertEqual([o["values"] for o in out], [
            {"weight": 12.5, "temp": 21}, {"weight": 13.25, "temp": 22},
            {"weight": 14, "temp": None}, {"weight": 1000, "temp": -4}])
        self.assertEqual(metric(self.metrics(), "serial_bad_lines", "dev"), 2)
        self.finish(proc)

    def test_json_lines(self):
        proc = self.run_serial("""format = json
channels = p, q
timestamp_field = ts""")
        self.pair.write(b'{"ts": 1764174903250, "p": 1.5, "q": 0.25}\n'
                        b'{"ts": "2026-11-26T16:35:03+01:00", "p": null, "q": "7"}\n'
                        b'{"p": 1,\n'
                        b'[1,2]\n'
                        b'{"p": "high"}\n'
                        b'{"q": 8}\n')
        out = self.wait_lines(proc, 3)
        self.assertEqual(out[0]["ts"], "2025-11-26T16:35:03.250000Z")
        self.assertEqual(out[1]["ts"], "2026-11-26T15:35:03.000000Z")
        self.assertEqual([o["values"] for o in out], [
            {"p": 1.5, "q": 0.25}, {"p": None, "q": 7}, {"p": None, "q": 8}])
        self.assertEqual(metric(self.metrics(), "serial_bad_lines", "dev"), 3)
        self.finish(proc)

    def test_device_disappears_and_comes_back(self):
        proc = self.run_serial("""format = kv
channels = a""")
        self.pair.write(b"a=1\n")
        self.wait_lines(proc, 1)
        self.pair.stop()  # the far end closes and the links go away
        seen = {}

        def retrying():
            try:
                status, _, body = ewtest.http_request(self.port, "GET", "/health")
            except OSError:
                return False
            if status == 503 and "dev" in json.loads(body).get("retrying", []):
                seen.update(json.loads(body)["nodes"]["dev"])
                return True
            return False
        self.wait_for(retrying, proc, "/health to show dev retrying")
        self.assertEqual(seen["state"], "retrying")
        self.assertIn(self.pair.b, seen["error"])
        self.pair.start()  # the same link names: the device is back
        self.wait_for(lambda: "reopened" in proc.stderr(), proc, "the device reopened", timeout=60)
        self.pair.write(b"a=2\n")
        out = self.wait_lines(proc, 2)
        self.assertEqual([o["values"]["a"] for o in out], [1, 2])
        self.wait_for(lambda: ewtest.http_request(self.port, "GET", "/health")[0] == 200,
                      proc, "/health 200 again")
        body = self.metrics()
        self.assertEqual(metric(body, "serial_reopens", "dev"), 1, body)
        self.assertGreaterEqual(metric(body, "node_retries", "dev") or 0, 0)
        err = self.finish(proc)
        self.assertIn("recovered after", err)


if __name__ == "__main__":
    ewtest.main()
