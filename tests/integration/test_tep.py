"""The Tennessee Eastman (TEP) protocol of tools/evaluate on small hand-made
outputs whose figures are worked out by hand in the comments, and tools/tep end
to end: the real binary with the zscore detector over a small TEP-shaped data
folder generated here (the real data set never enters the tests).
"""

import importlib.machinery
import importlib.util
import json
import os
import random
import subprocess
import sys

import ewtest

EVALUATE = os.path.join(ewtest.SOURCE_DIR, "tools", "evaluate")
TEP = os.path.join(ewtest.SOURCE_DIR, "tools", "tep")


def load_tool(path, name):
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


ev = load_tool(EVALUATE, "ew_evaluate_under_test")


def ts_of(i):
    """The i-th timestamp: one every 3 minutes from 2000-01-01, as in TEP's files."""
    m = 3 * i
    return "2000-01-%02dT%02d:%02d:00.000000Z" % (1 + m // 1440, (m // 60) % 24, m % 60)


def output_lines(flags, train=3, scores=None, node="det"):
    """jsonl lines of a run: `train` learning rows (null score), then one row per
    flag (score 0.9 where flagged, else 0.1, or the given scores)."""
    lines = []
    for i in range(train):
        lines.append({"ts": ts_of(i), "node": node, "score": None, "anomaly": False})
    for k, f in enumerate(flags):
        s = scores[k] if scores is not None else (0.9 if f else 0.1)
        lines.append({"ts": ts_of(train + k), "node": node, "score": s, "anomaly": bool(f)})
    return "".join(json.dumps(l) + "\n" for l in lines)


# Ten test rows, faulty from row 5 (1-based) on: rows 1..4 normal, 5..10 faulty.
#              normal      | faulty
FAULT00 = [0, 1, 0, 0, 0, 0, 0, 0, 1, 1]
FAULT01 = [0, 0, 1, 0, 0, 1, 1, 0, 1, 1]
FAULT03 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]


class TepProtocolTest(ewtest.EdgewatchTest):

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def evaluate(self, *args):
        return subprocess.run([sys.executable, EVALUATE] + list(args), capture_output=True,
                              text=True, timeout=60)

    def outputs(self):
        folder = os.path.join(self.tmp, "runs")
        self.write("runs/test_fault00.jsonl", output_lines(FAULT00))
        # Fault 1: row 5 (the first faulty one) has a score of 0.6 but no flag.
        scores = [0.9 if f else 0.1 for f in FAULT01]
        scores[4] = 0.6
        self.write("runs/test_fault01.jsonl", output_lines(FAULT01, scores=scores))
        # Fault 3: the first test row was still taken to learn (null score).
        text = output_lines(FAULT03).splitlines()
        row = json.loads(text[3])
        row["score"] = None
        text[3] = json.dumps(row)
        self.write("runs/test_fault03.jsonl", "\n".join(text) + "\n")
        return folder

    def test_protocol_by_hand(self):
        # Each output: 3 training rows (null), then the 10 test rows above.
        # fault 00: false alarms at test rows 2, 9, 10 -> 3 of 10.
        # fault 01: normal rows 1..4: one flag (row 3) -> 1 of 4; faulty rows 5..10:
        #   flags at 6, 7, 9, 10 -> detection 4/6; delay: row 5 to row 6 = 1 row.
        # fault 03: no false alarm (0 of 4); faulty: row 10 -> 1/6, delay 5 rows.
        # Means over faults 1 and 3: (4/6 + 1/6) / 2 = 5/12; without 3: 4/6.
        # False-alarm rate (3 + 1 + 0) / (10 + 4 + 4) = 4/18; fault 00 alone 3/10.
        # Mean delay (1 + 5) / 2 = 3 rows.
        # Events (flag runs): fault 00: [2], [9..10] -> 2 false; fault 01: [3] false,
        #   [6..7], [9..10] in the window, delay 1 row = 180 s; fault 03: [10], delay
        #   5 rows = 900 s. Pooled: 6 events, 3 false, windows 2 of 2, delay 3 rows,
        #   540 s, events per window (2 + 1) / 2 = 1.5; normal time 18 rows * 180 s =
        #   3240 s, false events per day 3 / (3240 / 86400) = 80.
        folder = self.outputs()
        r = self.evaluate("--tep", folder, "--test-rows", "10", "--fault-start", "5", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        runs = {f["fault"]: f for f in rep["faults"]}
        self.assertEqual(sorted(runs), [0, 1, 3])
        self.assertIsNone(runs[0]["detection_rate"])
        self.assertEqual((runs[0]["false_alarms"], runs[0]["normal_rows"]), (3, 10))
        self.assertAlmostEqual(runs[1]["detection_rate"], 4 / 6)
        self.assertEqual((runs[1]["false_alarms"], runs[1]["normal_rows"]), (1, 4))
        self.assertEqual(runs[1]["delay_rows"], 1)
        self.assertAlmostEqual(runs[3]["detection_rate"], 1 / 6)
        self.assertEqual(runs[3]["delay_rows"], 5)
        self.assertEqual(runs[3]["learning_rows"], 1)
        self.assertAlmostEqual(rep["mean_detection"], 5 / 12)
        self.assertAlmostEqual(rep["mean_detection_without_3_9_15"], 4 / 6)
        self.assertAlmostEqual(rep["false_alarm_rate"], 4 / 18)
        self.assertAlmostEqual(rep["false_alarm_rate_fault00"], 3 / 10)
        self.assertEqual(rep["mean_delay_rows"], 3.0)
        self.assertEqual(rep["learning_rows"], 1)
        self.assertEqual(rep["missing_faults"], [2] + list(range(4, 22)))
        e = rep["events"]
        self.assertEqual(rep["events_source"], "runs of anomaly flags")
        self.assertEqual((e["events"], e["false_events"], e["detected"], e["window_count"]),
                         (6, 3, 2, 2))
        self.assertEqual((e["delay_rows_mean"], e["delay_seconds_mean"]), (3.0, 540.0))
        self.assertEqual(e["events_per_window"], 1.5)
        self.assertAlmostEqual(e["normal_seconds"], 3240.0)
        self.assertAlmostEqual(e["false_events_per_day"], 80.0)
        # --threshold 0.5 adds fault 1's row 5: detection 5/6, delay 0; its runs become
        # [3], [5..7], [9..10].
        r = self.evaluate("--tep", folder, "--test-rows", "10", "--fault-start", "5", "--json",
                          "--threshold", "0.5")
        rep = json.loads(r.stdout)
        runs = {f["fault"]: f for f in rep["faults"]}
        self.assertAlmostEqual(runs[1]["detection_rate"], 5 / 6)
        self.assertEqual(runs[1]["delay_rows"], 0)
        self.assertEqual(runs[1]["events"]["events"], 3)
        self.assertEqual(rep["detection"], "score >= 0.5")
        # The table names every figure.
        r = self.evaluate("--tep", folder, "--test-rows", "10", "--fault-start", "5")
        self.assertEqual(r.returncode, 0, r.stderr)
        for text in ("mean detection, faults 1-21: 0.417 (over the 2 faults run)",
                     "mean detection without 3, 9, 15: 0.667",
                     "false-alarm rate: 22.2 % (4 of 18 normal rows); on test_fault00 alone: "
                     "30.0 %", "mean delay to the first flag: 3.0 rows",
                     "not every file was scored",
                     "false events 3 (80.00 per day of normal time"):
            self.assertIn(text, r.stdout)

    def test_event_records_of_a_run(self):
        # fault 01 with records in test_fault01.events.jsonl: one event over test rows
        # 2..3 (false) and one opened at row 7 and never closed (lasts to row 10:
        # delay 2 rows = 360 s); the flags (FAULT01) are then not the events.
        folder = os.path.join(self.tmp, "runs")
        self.write("runs/test_fault01.jsonl", output_lines(FAULT01))

        def rec(state, eid, start, end):
            return json.dumps({"ts": ts_of(3 + (end if end is not None else start)),
                               "node": "det", "event": state, "id": eid,
                               "start": ts_of(3 + start),
                               "end": None if end is None else ts_of(3 + end)})
        self.write("runs/test_fault01.events.jsonl", "\n".join(
            [rec("open", 1, 1, None), rec("closed", 1, 1, 2), rec("open", 2, 6, None)]) + "\n")
        r = self.evaluate("--tep", folder, "--test-rows", "10", "--fault-start", "5", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        e = rep["events"]
        self.assertEqual(rep["events_source"], "event records")
        self.assertEqual((e["events"], e["false_events"], e["detected"]), (2, 1, 1))
        self.assertEqual((e["delay_rows_mean"], e["delay_seconds_mean"]), (2.0, 360.0))
        # The point-wise figures still come from the flags.
        self.assertAlmostEqual(rep["faults"][0]["detection_rate"], 4 / 6)

    def test_an_events_sink_that_wrote_nothing(self):
        # Every run had an events file, all empty, yet rows were flagged: the sink did
        # not deliver events, so the events are the runs of flags (fault 01: [3],
        # [6..7], [9..10]), with a warning. Had no row been flagged, no event at all.
        folder = os.path.join(self.tmp, "runs")
        self.write("runs/test_fault01.jsonl", output_lines(FAULT01))
        self.write("runs/test_fault01.events.jsonl", "")
        r = self.evaluate("--tep", folder, "--test-rows", "10", "--fault-start", "5", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        self.assertEqual(rep["events_source"], "runs of anomaly flags")
        self.assertEqual(rep["events"]["events"], 3)
        self.assertIn("the events sink wrote no event record although rows were flagged",
                      r.stderr)
        self.write("runs/test_fault01.jsonl", output_lines([0] * 10))
        r = self.evaluate("--tep", folder, "--test-rows", "10", "--fault-start", "5", "--json")
        rep = json.loads(r.stdout)
        self.assertEqual((rep["events_source"], rep["events"]["events"]), ("event records", 0))
        self.assertNotIn("warning", r.stderr)

    def test_bad_outputs_are_refused(self):
        folder = os.path.join(self.tmp, "runs")
        self.write("runs/test_fault01.jsonl", output_lines(FAULT01, train=0)[:-1].rsplit(
            "\n", 1)[0] + "\n")
        r = self.evaluate("--tep", folder, "--test-rows", "10", "--fault-start", "5")
        self.assertEqual(r.returncode, 1)
        self.assertIn("test_fault01.jsonl: 9 sample lines, fewer than the 10 rows of a test "
                      "file", r.stderr)
        empty = os.path.join(self.tmp, "nothing")
        os.mkdir(empty)
        r = self.evaluate("--tep", empty)
        self.assertIn("holds no output named after a test file", r.stderr)
        r = self.evaluate("--tep", folder, "extra.jsonl")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--tep reads its outputs from the folder", r.stderr)


def tep_folder(root, faults=(0, 1, 3), train_rows=300, test_rows=960, seed=3):
    """A TEP-shaped data folder: train_normal.csv and test_faultNN.csv with the
    columns timestamp, xmeas_1, xmeas_2, xmv_1 (Gaussian noise around fixed
    levels), a row every 3 minutes from 2000-01-01. Fault 1 steps xmeas_1 up by 10
    standard deviations from row 161 on; fault 3 changes nothing (a fault no
    detector can see)."""
    rng = random.Random(seed)
    os.makedirs(root)
    levels = (0.25, 3657.0, 40.0)
    sds = (0.01, 20.0, 1.0)

    def write(name, rows, fault):
        lines = ["timestamp,xmeas_1,xmeas_2,xmv_1"]
        for i in range(rows):
            vals = [l + rng.gauss(0, s) for l, s in zip(levels, sds)]
            if fault == 1 and i >= 160:
                vals[0] += 10 * sds[0]
            lines.append("%s,%s" % (ts_of(i).replace("T", " ")[:19],
                                    ",".join("%.5f" % v for v in vals)))
        with open(os.path.join(root, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    write("train_normal.csv", train_rows, None)
    for fault in faults:
        write("test_fault%02d.csv" % fault, test_rows, fault)
    return root


class TepToolTest(ewtest.EdgewatchTest):

    def tep(self, *args, timeout=240):
        build = os.path.dirname(os.path.dirname(ewtest.BIN))
        return subprocess.run([sys.executable, TEP, "--build", build] + list(args),
                              capture_output=True, text=True, timeout=timeout)

    def fragment(self, text, name="det.ini"):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_zscore_end_to_end(self):
        data = tep_folder(os.path.join(self.tmp, "tep"))
        before = {n: os.path.getmtime(os.path.join(data, n)) for n in os.listdir(data)}
        # zscore's own score and flag (calibrate = none): the arithmetic below is its.
        config = self.fragment("[detector.det]\nplugin = zscore\ninput = data\nthreshold = 4\n"
                               "calibrate = none\n")
        outputs = os.path.join(self.tmp, "outputs")
        r = self.tep("--config", config, "--data", data, "--json", "--outputs", outputs)
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        self.assertEqual(rep["train_rows"], 300)
        self.assertEqual(rep["faults_run"], [1, 3])
        self.assertEqual(rep["missing_faults"], [2] + list(range(4, 22)))
        runs = {f["fault"]: f for f in rep["faults"]}
        # Normal rows: all 960 of fault 00 and rows 1..160 of faults 1 and 3.
        self.assertEqual(rep["normal_rows"], 960 + 2 * 160)
        self.assertEqual(runs[1]["rows"], 960)
        # A 10-sd step is flagged at once (z = 10 > 4), and until the step's own values
        # in the rolling window (460 values when it starts) raise the mean and sd
        # enough: after k faulty rows, p = k / (460 + k), z = 10 (1 - p) /
        # sqrt(100 p (1 - p) + 1), below 4 from k = 25 on. Fault 3 is invisible; at
        # |z| > 4, Gaussian noise makes a false alarm every ~16000 values.
        self.assertEqual(runs[1]["delay_rows"], 0)
        self.assertGreaterEqual(runs[1]["detected_rows"], 15)
        self.assertLess(runs[3]["detection_rate"], 0.02)
        self.assertLess(rep["false_alarm_rate"], 0.02)
        # The figures are the protocol's over the rows written: counted here from the
        # kept output (300 training rows, then 960 test rows, faulty from the 161st).
        flags = [l["anomaly"] for l in ewtest.json_lines(
            os.path.join(outputs, "test_fault01.jsonl"))][300:]
        self.assertEqual(runs[1]["detected_rows"], sum(flags[160:]))
        self.assertAlmostEqual(runs[1]["detection_rate"], sum(flags[160:]) / 800)
        self.assertEqual(runs[1]["false_alarms"], sum(flags[:160]))
        f00 = [l["anomaly"] for l in ewtest.json_lines(
            os.path.join(outputs, "test_fault00.jsonl"))][300:]
        self.assertAlmostEqual(rep["false_alarm_rate_fault00"], sum(f00) / 960)
        self.assertEqual(rep["learning_rows"], 0)
        e = rep["events"]
        self.assertEqual(e["windows"][0]["delay_rows"], 0)
        self.assertEqual(e["window_count"], 2)
        self.assertAlmostEqual(e["normal_seconds"], (960 + 320) * 180.0)
        # The outputs kept are the runs: tools/evaluate --tep scores them the same.
        self.assertEqual(sorted(n for n in os.listdir(outputs) if not n.endswith(".events.jsonl")),
                         ["test_fault00.jsonl", "test_fault01.jsonl", "test_fault03.jsonl"])
        lines = ewtest.json_lines(os.path.join(outputs, "test_fault01.jsonl"))
        self.assertEqual(len(lines), 300 + 960)
        # The test rows follow the training rows in time (3 minutes on from the last).
        t = [ev.parse_ts(l["ts"]) for l in lines]
        self.assertTrue(all(b - a == 180_000_000 for a, b in zip(t, t[1:])))
        r2 = subprocess.run([sys.executable, EVALUATE, "--tep", outputs, "--json"],
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(r2.returncode, 0, r2.stderr)
        again = json.loads(r2.stdout)
        for key in ("faults", "mean_detection", "false_alarm_rate", "events"):
            self.assertEqual(again[key], rep[key], key)
        # The data folder is only read.
        self.assertEqual(before, {n: os.path.getmtime(os.path.join(data, n))
                                  for n in os.listdir(data)})
        # The text table; --faults picks files.
        r = self.tep("--config", config, "--data", data, "--faults", "0,1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("over 2 test files", r.stdout)
        self.assertIn("mean detection, faults 1-21:", r.stdout)
        self.assertIn("false-alarm rate:", r.stdout)
        self.assertRegex(r.stdout, r"\n   01 +\d\.\d{3} +0 ")

    def test_errors_are_clear(self):
        data = tep_folder(os.path.join(self.tmp, "tep"), faults=(0,), test_rows=150)
        config = self.fragment("[detector.det]\nplugin = zscore\ninput = data\n")
        r = self.tep("--config", config, "--data", os.path.join(self.tmp, "nowhere"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot read the TEP data folder", r.stderr)
        r = self.tep("--config", config, "--data", data, "--faults", "2")
        self.assertIn("has no test_fault02.csv", r.stderr)
        # A test file too short for the protocol (the fault starts at row 161).
        r = self.tep("--config", config, "--data", data)
        self.assertEqual(r.returncode, 1)
        self.assertIn("test_fault00.csv has 150 rows", r.stderr)
        bad = self.fragment("[detector.det]\nplugin = zscore\ninput = data\n\n"
                            "[sink.x]\nplugin = jsonl\ninput = det\n", "bad.ini")
        r = self.tep("--config", bad, "--data", data)
        self.assertEqual(r.returncode, 1)
        self.assertIn("the fragment holds detector sections only; tools/tep adds", r.stderr)
        # A detector option the plugin refuses: edgewatch check's message is passed on.
        wrong = self.fragment("[detector.det]\nplugin = zscore\ninput = data\nwindow = zero\n",
                              "wrong.ini")
        r = self.tep("--config", wrong, "--data", data)
        self.assertEqual(r.returncode, 1)
        self.assertIn("window", r.stderr)
        self.assertIn("wrong.ini:4: [detector.det] window", r.stderr)
        # A test file with other columns than the training file.
        with open(os.path.join(data, "test_fault01.csv"), "w", encoding="utf-8") as f:
            f.write("timestamp,xmeas_1\n2000-01-01 00:00:00,1\n")
        r = self.tep("--config", config, "--data", data, "--faults", "1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("test_fault01.csv: its columns differ from", r.stderr)


if __name__ == "__main__":
    ewtest.unittest.main()
