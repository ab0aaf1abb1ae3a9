"""`edgewatch run` end to end: a CSV replay reaches a JSON-lines file complete,
exact and in order and the run ends by itself; SIGTERM under full load shuts
down cleanly without losing a sample; a plugin's init failure exits 1."""

import calendar
import json
import math
import os
import re
import time

import ewtest

BASE_TS = "2024-05-01T12:00:00"
STEP_NS = 250_000_000  # 250 ms between rows

_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]00:?00)?$")


def iso_to_ns(text):
    """ns since the epoch of a UTC ISO 8601 timestamp (Z or +00:00, up to 9 decimals)."""
    m = _ISO.match(text)
    if m is None:
        raise ValueError("not a UTC ISO 8601 timestamp: %r" % text)
    seconds = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    frac = (m.group(2) or "").ljust(9, "0")
    return seconds * 1_000_000_000 + int(frac or 0)


def ns_to_iso(ns):
    seconds, frac = divmod(ns, 1_000_000_000)
    return "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)),
                         frac // 1_000_000)


def record_ts(record):
    """The timestamp of a jsonl record in ns (`ts` is ISO 8601 text in UTC)."""
    return iso_to_ns(record["ts"])


def record_value(record, channel):
    """A channel's value in a jsonl record: {"values": {"a": 1.5, ...}}."""
    return record["values"][channel]


class RunTest(ewtest.EdgewatchTest):

    def test_csv_replay_reaches_jsonl_exactly(self):
        rows = 1000
        base_ns = iso_to_ns(BASE_TS + "Z")
        csv_path = os.path.join(self.tmp, "in.csv")
        out = os.path.join(self.tmp, "out.jsonl")
        expected = []
        with open(csv_path, "w", encoding="utf-8") as f:
            f.write("timestamp,a,b\n")
            for i in range(rows):
                ts = base_ns + i * STEP_NS
                a = "%.3f" % (100 * math.sin(i / 10)) if i != 600 else "5000"
                b = "%g" % (i * 0.5 - 100)
                f.write("%s,%s,%s\n" % (ns_to_iso(ts), a, b))
                expected.append((ts, float(a), float(b)))
        path = self.write_config(self.pipeline() + """
[source.in]
plugin = csv
path = %s

[detector.z]
plugin = zscore
input = in

[sink.out]
plugin = jsonl
input = z
path = %s
only = all
""" % (csv_path, out))
        proc = self.start("run", path)
        code = self.wait_exit(proc, timeout=60)
        self.assertEqual(code, ewtest.EXIT_OK, proc.output())
        records = ewtest.json_lines(out)
        self.assertEqual(len(records), rows, "lines in %s" % out)
        for i, (record, (ts, a, b)) in enumerate(zip(records, expected)):
            got = (record_ts(record), record_value(record, "a"), record_value(record, "b"))
            self.assertEqual(got, (ts, a, b), "line %d: %s" % (i + 1, json.dumps(record)))
            self.assertIn("score", record, "line %d has no score" % (i + 1))
            self.assertIn("anomaly", record, "line %d has no anomaly flag" % (i + 1))

    def test_sigterm_under_load_loses_nothing(self):
        out = os.path.join(self.tmp, "out.jsonl")
        path = self.write_config(
            self.pipeline(log_format="json", log_level="info", shutdown_timeout="10s") + """
[source.gen]
plugin = synth
rate = 0
count = 0

[detector.z]
plugin = zscore
input = gen

[sink.out]
plugin = jsonl
input = z
path = %s
only = all
""" % out)
        proc = self.start("run", path)
        time.sleep(1.5)
        self.assertTrue(proc.running(), "edgewatch exited early\n" + proc.output())
        sent = time.monotonic()
        code = self.stop(proc, timeout=20)
        elapsed = time.monotonic() - sent
        self.assertEqual(code, ewtest.EXIT_OK, proc.output())
        self.assertLessEqual(elapsed, 10.5, "shutdown took longer than shutdown_timeout")

        counts = self.node_counts(proc.stderr() + "\n" + proc.stdout())
        for node in ("gen", "z", "out"):
            self.assertIn(node, counts, "no samples_in=/samples_out=/dropped= line for node "
                          "%r in the log\n%s" % (node, proc.output()))
        lines = ewtest.count_lines(out)
        self.assertGreater(lines, 0)
        self.assertEqual(counts["gen"]["samples_out"], lines, counts)
        self.assertEqual(counts["z"]["samples_in"], lines, counts)
        self.assertEqual(counts["z"]["samples_out"], lines, counts)
        self.assertEqual(counts["out"]["samples_in"], lines, counts)
        for node, c in counts.items():
            self.assertEqual(c["dropped"], 0, "node %s dropped samples: %s" % (node, counts))

    @staticmethod
    def node_counts(log):
        """{node: {samples_in, samples_out, dropped}} from JSON log lines whose msg
        holds `samples_in=N samples_out=M dropped=D` (the last such line per node)."""
        pattern = re.compile(r"samples_in=(\d+) samples_out=(\d+) dropped=(\d+)")
        counts = {}
        for line in log.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict) or "node" not in entry:
                continue
            m = pattern.search(str(entry.get("msg", "")))
            if m:
                counts[entry["node"]] = dict(zip(("samples_in", "samples_out", "dropped"),
                                                 map(int, m.groups())))
        return counts

    def test_plugin_init_failure_exits_1(self):
        bad = "/proc/nonexistent/x.jsonl"
        path = self.write_config(self.pipeline() + """
[source.gen]
plugin = synth
count = 10
rate = 0

[sink.out]
plugin = jsonl
input = gen
path = %s
""" % bad)
        # The config itself is valid: check passes, run fails at the sink's init.
        self.assertExit(self.cli("check", path), ewtest.EXIT_OK)
        result = self.cli("run", path)
        self.assertExit(result, ewtest.EXIT_RUNTIME)
        self.assertIn(bad, result.stderr)


    def test_chained_detectors_end_with_one_verdict(self):
        """zscore -> zscore: the second replaces the first's score and anomaly and
        keeps its z channel; every sample arrives."""
        out = os.path.join(self.tmp, "out.jsonl")
        path = self.write_config(self.pipeline() + """
[source.gen]
plugin = synth
channels = a, b
rate = 0
count = 3000

[detector.first]
plugin = zscore
input = gen
window = 50

[detector.second]
plugin = zscore
input = first
window = 200

[sink.out]
plugin = jsonl
input = second
path = %s
""" % out)
        result = self.cli("run", path, timeout=60)
        self.assertExit(result, ewtest.EXIT_OK)
        records = ewtest.json_lines(out)
        self.assertEqual(len(records), 3000)
        self.assertEqual(set(records[0]["values"]), {"a", "b", "z", "z_second"})
        self.assertIn("score", records[0])
        self.assertIn("anomaly", records[0])
        self.assertEqual(records[-1]["node"], "second")

if __name__ == "__main__":
    ewtest.main()
