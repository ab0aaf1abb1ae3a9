"""Alert events end to end: a CSV replay with a burst injected on one channel,
scored by zscore, reaches a jsonl sink set to `only = events` as an open and a
closed event line of the same id, naming that channel first; every opened
event is closed by the end of the run, and no sample line is written. On an
8-channel stream at 20 Hz with faults injected into one channel at a time, the
faulty channel is ranked first in at least 95 % of the events, and a fault of
ten minutes (12,000 samples) is one event."""

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


    def test_faulty_channel_ranked_first_and_a_long_fault_is_one_event(self):
        step = 50_000_000  # 20 Hz
        channels = ["ch%d" % k for k in range(8)]
        rng = random.Random(42)
        train, gap, short = 2000, 2400, 600
        faults = []  # (first row, last row, channel)
        row = train
        for _ in range(20):
            row += gap
            faults.append((row, row + short - 1, rng.randrange(8)))
            row += short
        row += gap
        faults.append((row, row + 12000 - 1, 5))  # ten minutes at 20 Hz
        rows = row + 12000 + gap
        fault_of = {}
        for first, last, ch in faults:
            for i in range(first, last + 1):
                fault_of[i] = ch
        sd = [0.5 + 0.25 * k for k in range(8)]
        path = os.path.join(self.tmp, "plant.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write("timestamp," + ",".join(channels) + "\n")
            for i in range(rows):
                v = [10 * k + rng.gauss(0, sd[k]) for k in range(8)]
                if i in fault_of:
                    v[fault_of[i]] += 6 * sd[fault_of[i]]
                f.write("%s,%s\n" % (iso(base_ns() + i * step), ",".join("%.4f" % x for x in v)))
        out = os.path.join(self.tmp, "events.jsonl")
        cfg = self.write_config(self.pipeline() + """
[source.plant]
plugin = csv
path = %s

[detector.z]
plugin = zscore
input = plant
baseline = frozen
train_samples = %d
; an on-delay: three samples in a row (0.15 s) open an event, a lone spike none
alert_delay = 3

[sink.events]
plugin = jsonl
input = z
only = events
path = %s
""" % (path, train, out))
        proc = self.start("run", cfg)
        self.assertEqual(self.wait_exit(proc, timeout=120), ewtest.EXIT_OK, proc.output())
        closed = [e for e in ewtest.json_lines(out) if e["event"] == "closed"]
        row_of = {iso(base_ns() + i * step): i for i in range(rows)}
        ranked_first, in_faults = 0, 0
        per_fault = [0] * len(faults)
        for e in closed:
            start, end = row_of[e["start"]], row_of[e["end"]]
            hit = [k for k, (a, b, _) in enumerate(faults) if start <= b and end >= a]
            if not hit:
                continue
            in_faults += 1
            for k in hit:
                per_fault[k] += 1
            ranked_first += e["channels"][0]["name"] == channels[faults[hit[0]][2]]
        self.assertTrue(all(per_fault), "faults without an event: %r" % per_fault)
        self.assertGreaterEqual(ranked_first, 0.95 * in_faults, (ranked_first, in_faults))
        self.assertEqual(per_fault[-1], 1, "the ten-minute fault gave %d events" % per_fault[-1])
        long_event = next(e for e in closed if row_of[e["start"]] <= faults[-1][1] and
                          row_of[e["end"]] >= faults[-1][0])
        self.assertGreater(long_event["duration_s"], 590, long_event)
        self.assertEqual(long_event["channels"][0]["name"], "ch5", long_event)
        # Normal stretches raise few events of their own.
        false_events = len(closed) - in_faults
        self.assertLess(false_events, 5, closed[:20])


if __name__ == "__main__":
    ewtest.main()
