"""End to end: the context detector through the real binary over a csv file of
two channels: the same file in gives the same bytes out, a spike on one
channel and a change of rhythm on the other are flagged where they happen,
missing readings are skipped, and a bad option combination is refused by
`edgewatch check` with the reason."""

import math
import os
import random
import textwrap

import ewtest

ROWS = 6000
SPIKE = 4000      # pressure jumps by 15 sd for one row
RHYTHM = 5000     # temp's period drops from 96 to 24 rows
MISSING = range(1000, 3000, 101)


def write_csv(path):
    rng = random.Random(7)
    with open(path, "w") as f:
        f.write("timestamp,temp,pressure\n")
        for i in range(ROWS):
            period = 96.0 if i < RHYTHM else 24.0
            temp = 20 + 5 * math.sin(2 * math.pi * i / period) + rng.gauss(0, 0.05)
            pressure = 3 + rng.gauss(0, 0.1) + (1.5 if i == SPIKE else 0)
            cells = [repr(temp), "" if i in MISSING else repr(pressure)]
            f.write("2026-01-01T%02d:%02d:%02d.000Z,%s\n" % (
                i // 3600, i // 60 % 60, i % 60, ",".join(cells)))


class ContextTest(ewtest.EdgewatchTest):

    def config(self, out, extra=""):
        csv = os.path.join(self.tmp, "in.csv")
        if not os.path.exists(csv):
            write_csv(csv)
        return self.write_config(self.pipeline() + textwrap.dedent("""
            [source.rows]
            plugin = csv
            path = %s

            [detector.ctx]
            plugin = context
            input = rows
            %s

            [sink.out]
            plugin = jsonl
            input = ctx
            path = %s
            """) % (csv, extra, out), name=os.path.basename(out) + ".ini")

    def run_once(self, name):
        out = os.path.join(self.tmp, name)
        result = self.cli("run", self.config(out))
        self.assertExit(result, 0)
        with open(out, "rb") as f:
            return f.read()

    def test_deterministic_and_finds_the_spike_and_the_rhythm_change(self):
        first = self.run_once("a.jsonl")
        second = self.run_once("b.jsonl")
        self.assertEqual(first, second, "two runs over the same file differ")
        lines = ewtest.whole_json_lines(os.path.join(self.tmp, "a.jsonl"))
        self.assertEqual(len(lines), ROWS)
        flagged = [i for i, line in enumerate(lines) if line["anomaly"]]
        self.assertIn(SPIKE, flagged)
        self.assertGreater(lines[SPIKE]["score"], 0.9)
        after = [i for i in flagged if RHYTHM <= i < RHYTHM + 96]
        self.assertTrue(after, "the change of rhythm at %d was not flagged: %s" % (RHYTHM, flagged))
        others = [i for i in flagged if i != SPIKE and not RHYTHM <= i < RHYTHM + 200]
        self.assertLessEqual(len(others), 6, "alarms elsewhere: %s" % others)
        # The first 100 rows (warmup) are learning: written with no score.
        self.assertEqual([i for i, line in enumerate(lines) if line["score"] is None],
                         list(range(100)))
        for line in lines[100:]:
            self.assertTrue(0 <= line["score"] <= 1)

    def test_check_refuses_too_many_contexts(self):
        path = self.config(os.path.join(self.tmp, "x.jsonl"), extra="bins = 64\ncontext = 4")
        result = self.cli("check", path)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("contexts per channel", result.stderr)
        self.assertIn("detector.ctx", result.stderr)


if __name__ == "__main__":
    ewtest.main()
