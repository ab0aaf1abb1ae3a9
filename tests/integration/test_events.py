"""Alert events end to end: a CSV replay with a burst injected on one channel,
scored by zscore, reaches a jsonl sink set to `only = events` as an open and a
closed event line of the same id, naming that channel first; every opened
event is closed by the end of the run, and no sample line is written."""

import calendar
import os
import random
import time

import ewtest

BASE = "2024-05-01T12:00:00Z"
STEP_NS = 100_000_000  # 10 samples per second
ROWS = 1200
BURST = range(800, 806)  # rows where channel b jumps far outside its spread


def base_ns():
    return calendar.timegm(time.strptime(BASE, "%Y-%m-%dT%H:%M:%SZ")) * 1_000_000_000


def iso(ns):
    seconds, frac = divmod(ns, 1_000_000_000)
    return "%s.%06dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)), frac // 1000)


class EventsTest(ewtest.EdgewatchTest):

    def write_csv(self):
        """Three noisy channels (seeded: the same file every run), b bursting in BURST."""
        rng = random.Random(20261206)
        path = os.path.join(self.tmp, "in.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write("timestamp,a,b,c\n")
            for i in range(ROWS):
                a = 20 + rng.gauss(0, 1)
                b = 5 + rng.gauss(0, 0.5) + (40 if i in BURST else 0)
                c = -3 + rng.gauss(0, 2)
                f.write("%s,%.4f,%.4f,%.4f\n" % (iso(base_ns() + i * STEP_NS), a, b, c))
        return path

    def zscore_version(self):
        """(major, minor, patch) of the zscore plugin, from `edgewatch describe zscore`."""
        result = self.cli("describe", "zscore")
        self.assertExit(result, ewtest.EXIT_OK)
        first = result.stdout.splitlines()[0].split()  # "detector zscore 1.2.0"
        return tuple(int(x) for x in first[2].split("."))

    def test_burst_gives_an_open_and_a_closed_event_naming_the_channel(self):
        # zscore names channels (ABI 1.2 contributions) from its version 1.2.0 on;
        # an older one gives events without channels, which this test is not about.
        if self.zscore_version() < (1, 2, 0):
            self.skipTest("zscore %s reports no per-channel contributions (1.2.0 does)" %
                          ".".join(map(str, self.zscore_version())))
        out = os.path.join(self.tmp, "events.jsonl")
        path = self.write_config(self.pipeline() + """
[source.in]
plugin = csv
path = %s

[detector.z]
plugin = zscore
input = in
window = 300

[sink.events]
plugin = jsonl
input = z
only = events
path = %s
fsync = batch
""" % (self.write_csv(), out))
        proc = self.start("run", path)
        code = self.wait_exit(proc, timeout=60)
        self.assertEqual(code, ewtest.EXIT_OK, proc.output())
        lines = ewtest.json_lines(out)
        self.assertGreaterEqual(len(lines), 2, "event lines in %s: %r\n%s" % (out, lines, proc.output()))
        for line in lines:
            self.assertNotIn("values", line, "a sample line in an events sink: %r" % line)
            self.assertEqual(list(line), ["ts", "node", "event", "id", "start", "end", "duration_s",
                                          "peak_score", "peak_ts", "samples", "channels"], line)
            self.assertEqual(line["node"], "z", line)
        opened = [e for e in lines if e["event"] == "open"]
        closed = [e for e in lines if e["event"] == "closed"]
        # Each event opens once and closes once, in that order, with the same id.
        self.assertEqual(sorted(e["id"] for e in opened), sorted(e["id"] for e in closed), lines)
        for e in closed:
            first = next(i for i, x in enumerate(lines) if x["id"] == e["id"])
            self.assertEqual(lines[first]["event"], "open", lines)
        # The event of the burst: opens within it, b is the channel blamed most.
        burst_start, burst_end = base_ns() + BURST[0] * STEP_NS, base_ns() + BURST[-1] * STEP_NS
        ours = [e for e in opened if iso(burst_start) <= e["start"] <= iso(burst_end + 5 * STEP_NS)]
        self.assertEqual(len(ours), 1, "no single event opened in the burst at %s: %r" % (iso(burst_start), lines))
        event_open = ours[0]
        event_closed = next(e for e in closed if e["id"] == event_open["id"])
        self.assertIsNone(event_open["end"])
        self.assertEqual(event_open["duration_s"], 0)
        self.assertEqual(event_open["ts"], event_open["start"])
        self.assertEqual(event_closed["ts"], event_closed["end"])
        self.assertEqual(event_closed["start"], event_open["start"])
        self.assertGreaterEqual(event_closed["end"], event_closed["start"])
        self.assertGreaterEqual(event_closed["samples"], 1)
        self.assertGreaterEqual(event_closed["peak_score"], event_open["peak_score"])
        for e in (event_open, event_closed):
            self.assertTrue(e["channels"], "no channels named: %r" % e)
            self.assertEqual(e["channels"][0]["name"], "b", e)
            shares = [c["share"] for c in e["channels"]]
            self.assertEqual(shares, sorted(shares, reverse=True), e)
            self.assertGreater(shares[0], 0.5, e)


if __name__ == "__main__":
    ewtest.main()
