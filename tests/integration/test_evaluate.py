"""The evaluation tools: tools/evaluate's NAB scorer and point-wise metrics on
small hand-made cases whose answers are worked out by hand in the comments; the
command line on hand-made files (metrics, and clear errors for bad input); and
a real edgewatch pipeline (csv -> zscore -> jsonl) scored end to end, through
tools/evaluate and through tools/nab on a two-file corpus made up here (the
real NAB corpus never enters the tests).

Notation: sig(y) = 2 / (1 + e^(5y)) - 1, so
  sig(-1)   = 2 / (1 + e^-5) - 1          = 0.9866143   (the best a detection earns)
  sig(-0.75)= 2 / (1 + e^-3.75) - 1       = 0.9540453   -> / sig(-1) = 0.9669891
  sig(-0.25)= 2 / (1 + e^-1.25) - 1       = 0.5545982   -> / sig(-1) = 0.5621241
  sig(1/3)  = 2 / (1 + e^(5/3)) - 1       = -0.6822618
  sig(4/3)  = 2 / (1 + e^(20/3)) - 1      = -0.9974580
  sig(5/3)  = 2 / (1 + e^(25/3)) - 1      = -0.9995194
  sig(8/3)  = 2 / (1 + e^(40/3)) - 1      = -0.9999968
The standard profile: tpWeight 1, fnWeight 1, fpWeight 0.11.
"""

import importlib.machinery
import importlib.util
import json
import math
import os
import random
import subprocess
import sys

import ewtest

EVALUATE = os.path.join(ewtest.SOURCE_DIR, "tools", "evaluate")
NAB = os.path.join(ewtest.SOURCE_DIR, "tools", "nab")


def load_tool(path, name):
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


ev = load_tool(EVALUATE, "ew_evaluate_under_test")
STD = ev.BUILTIN_PROFILES["standard"]
LOW_FP = ev.BUILTIN_PROFILES["reward_low_FP_rate"]
LOW_FN = ev.BUILTIN_PROFILES["reward_low_FN_rate"]

# 20 records: the probationary period is floor(0.15 * 20) = 3 records (0, 1, 2);
# one window over records 8..11 (4 rows, right index 11).
N = 20
WINDOW = [(8, 11)]


def scores_with(n=N, **at):
    """n scores of 0 with score v at record i for each i_=v keyword (e.g. r8=1)."""
    s = [0.0] * n
    for k, v in at.items():
        s[int(k[1:])] = v
    return s


def raw_at(scores, ranges=WINDOW, profile=STD, threshold=0.5, probation=None):
    f = ev.FileScoring("t", scores, ranges, probation=probation)
    return ev.raw_score([f], profile, threshold)[0], f


class ScorerTest(ewtest.unittest.TestCase):

    def norm(self, raw, f, profile=STD):
        null, perfect = ev.null_and_perfect([f], profile)
        return ev.normalise(raw, null, perfect)

    def test_sigmoid_and_probation(self):
        self.assertAlmostEqual(ev.sig(-1), 0.9866143, places=7)
        self.assertEqual(ev.sig(0), 0.0)
        self.assertAlmostEqual(ev.sig(1 / 3), -0.6822618, places=7)
        # Beyond 3 window widths a false alarm costs the full -1.
        self.assertEqual(ev.sig(3.01), -1.0)
        # min(floor(0.15 n), 750)
        self.assertEqual(ev.probation_rows(20), 3)
        self.assertEqual(ev.probation_rows(4999), 749)   # floor(749.85)
        self.assertEqual(ev.probation_rows(5000), 750)
        self.assertEqual(ev.probation_rows(365558), 750)

    def test_perfect_detector_scores_100(self):
        # One detection at the window's start (record 8): y = -(11 - 8 + 1)/4 = -1,
        # worth tpWeight * sig(-1)/sig(-1) = 1. Null = -fnWeight * 1 = -1,
        # perfect = tpWeight * 1 = 1, so 100 * (1 - -1) / (1 - -1) = 100.
        raw, f = raw_at(scores_with(r8=1.0))
        self.assertAlmostEqual(raw, 1.0, places=12)
        self.assertAlmostEqual(self.norm(raw, f), 100.0, places=9)
        # In every profile.
        for profile in (LOW_FP, LOW_FN):
            raw, f = raw_at(scores_with(r8=1.0), profile=profile)
            self.assertAlmostEqual(self.norm(raw, f, profile), 100.0, places=9)

    def test_null_detector_scores_0(self):
        # Nothing fires: the window is missed, raw = -fnWeight = -1 = S_null -> 0.
        raw, f = raw_at(scores_with())
        self.assertEqual(raw, -1.0)
        self.assertEqual(self.norm(raw, f), 0.0)
        # Low-FN profile: fnWeight 2, so raw -2, still normalised 0.
        raw, f = raw_at(scores_with(), profile=LOW_FN)
        self.assertEqual(raw, -2.0)
        self.assertEqual(self.norm(raw, f, LOW_FN), 0.0)

    def test_later_detection_in_window_is_worth_less(self):
        # Record 11, the window's last: y = -(11 - 11 + 1)/4 = -0.25,
        # worth sig(-0.25)/sig(-1) = 0.5621241; normalised 100 * 1.5621241 / 2 = 78.106.
        raw, f = raw_at(scores_with(r11=1.0))
        self.assertAlmostEqual(raw, 0.5621241, places=6)
        self.assertAlmostEqual(self.norm(raw, f), 78.10621, places=4)

    def test_only_first_detection_in_window_counts(self):
        # Records 8, 9, 10 fire: only record 8's 1.0 counts, not 1 + 0.97 + ...
        raw, _ = raw_at(scores_with(r8=1.0, r9=1.0, r10=1.0))
        self.assertAlmostEqual(raw, 1.0, places=12)
        # Records 9 and 10: record 9, y = -(11 - 9 + 1)/4 = -0.75 -> 0.9669891.
        raw, _ = raw_at(scores_with(r9=1.0, r10=1.0))
        self.assertAlmostEqual(raw, 0.9669891, places=6)

    def test_false_alarm_just_after_window_is_cheaper_than_far_away(self):
        # TP at 8 (+1), plus a false alarm at record 12: y = (12 - 11)/(4 - 1) = 1/3,
        # cost 0.11 * sig(1/3) = -0.0750488 -> raw 0.9249512.
        near, _ = raw_at(scores_with(r8=1.0, r12=1.0))
        self.assertAlmostEqual(near, 0.9249512, places=6)
        # At record 19: y = 8/3, cost 0.11 * -0.9999968 = -0.1099996 -> raw 0.8900004.
        far, _ = raw_at(scores_with(r8=1.0, r19=1.0))
        self.assertAlmostEqual(far, 0.8900004, places=6)
        self.assertGreater(near, far)
        # Before any window (record 5): exactly -fpWeight -> raw 0.89.
        before, _ = raw_at(scores_with(r8=1.0, r5=1.0))
        self.assertAlmostEqual(before, 0.89, places=12)
        # More than 3 window widths after: record 23 of 40, y = 12/3 = 4 > 3 -> -0.11.
        beyond, _ = raw_at(scores_with(n=40, r8=1.0, r23=1.0))
        self.assertAlmostEqual(beyond, 0.89, places=12)
        # Every false alarm counts: 12 and 19 together -> 1 - 0.0750488 - 0.1099996.
        both, _ = raw_at(scores_with(r8=1.0, r12=1.0, r19=1.0))
        self.assertAlmostEqual(both, 0.8149516, places=6)

    def test_probationary_period_is_not_scored(self):
        # A detection at record 1 (inside the first 3) costs nothing: raw stays -1
        # (the missed window), not -1.11.
        raw, f = raw_at(scores_with(r1=1.0))
        self.assertEqual(f.probation, 3)
        self.assertEqual(raw, -1.0)
        # A window entirely inside it (records 0..2) is not counted at all:
        # no window -> null = perfect = 0, the normalised score is undefined.
        raw, f = raw_at(scores_with(r1=1.0), ranges=[(0, 2)])
        self.assertEqual(f.windows, 0)
        self.assertEqual(raw, 0.0)
        self.assertIsNone(self.norm(raw, f))
        # A false alarm after that window still measures its distance from it:
        # record 4, y = (4 - 2)/(3 - 1) = 1, cost 0.11 * sig(1) = 0.11 * -0.9866143.
        raw, f = raw_at(scores_with(r4=1.0), ranges=[(0, 2)])
        self.assertAlmostEqual(raw, -0.1085276, places=6)

    def test_threshold_sweep_picks_the_best(self):
        # Record 8 (window start) scores 0.6; a false alarm at 15 scores 0.9 and one at
        # 16 scores 0.3. Thresholds:
        #   never: -1
        #   0.9:   -1 + 0.11 * sig(4/3) = -1 - 0.1097204 = -1.1097204
        #   0.6:   1 - 0.1097204 = 0.8902796   <- best
        #   0.3:   0.8902796 + 0.11 * sig(5/3) = 0.8902796 - 0.1099471 = 0.7803325
        #   0:     every record after probation fires: worse still
        # normalised 100 * (0.8902796 + 1) / 2 = 94.51398.
        f = ev.FileScoring("t", scores_with(r8=0.6, r15=0.9, r16=0.3), WINDOW)
        best = ev.sweep([f], STD)
        self.assertEqual(best["threshold"], 0.6)
        self.assertAlmostEqual(best["raw"], 0.8902796, places=6)
        self.assertAlmostEqual(best["normalised"], 94.51398, places=4)
        self.assertEqual((best["tp"], best["fp"], best["fn"]), (1, 1, 0))
        self.assertAlmostEqual(ev.raw_score([f], STD, 0.3)[0], 0.7803325, places=6)
        # A detector that only fires far from the window (60 records, probation 9): best
        # is never to fire. (Threshold 0 fires everywhere: +0.97 for the window's first
        # scored record, 9, but 48 false alarms from record 12 on: far below -1.)
        f = ev.FileScoring("t", scores_with(n=60, r15=0.9, r50=0.8), WINDOW)
        best = ev.sweep([f], STD)
        self.assertIsNone(best["threshold"])
        self.assertEqual(best["normalised"], 0.0)

    def test_sweep_is_one_threshold_over_all_files(self):
        # File A: its window start scores 0.5. File B: a false alarm before its window
        # scores 0.7, its window start 0.4. Per file, A would take 0.5 and B 0.4 with
        # one false alarm; over both, one threshold:
        #   0.7: A -1, B -1 - 0.11            -> -2.11
        #   0.5: A +1, B -1.11                -> -0.11
        #   0.4: A +1, B +1 - 0.11            ->  1.89   <- best
        # null -2, perfect 2 -> 100 * 3.89 / 4 = 97.25.
        a = ev.FileScoring("a", scores_with(r8=0.5), WINDOW)
        b = ev.FileScoring("b", scores_with(r5=0.7, r8=0.4), WINDOW)
        best = ev.sweep([a, b], STD)
        self.assertEqual(best["threshold"], 0.4)
        self.assertAlmostEqual(best["raw"], 1.89, places=12)
        self.assertAlmostEqual(best["normalised"], 97.25, places=9)
        self.assertEqual(best["windows"], 2)

    def test_sweep_matches_brute_force(self):
        # Random files with several windows and tied scores: the sweep's best equals
        # the best raw_score over every distinct threshold, and its threshold gives it.
        rng = random.Random(11)
        for trial in range(20):
            files = []
            for k in range(3):
                n = rng.randint(30, 120)
                scores = [round(rng.random(), 1) for _ in range(n)]
                starts = sorted(rng.sample(range(n - 5), 2))
                ranges = [(s, s + rng.randint(0, 4)) for s in starts]
                if ranges[1][0] <= ranges[0][1]:
                    ranges = ranges[:1]
                files.append(ev.FileScoring("f%d" % k, scores, ranges))
            for profile in (STD, LOW_FP, LOW_FN):
                best = ev.sweep(files, profile)
                candidates = sorted({r[0] for f in files for r in f.records}) + [2.0]
                brute = max(ev.raw_score(files, profile, t)[0] for t in candidates)
                self.assertAlmostEqual(best["raw"], brute, places=9, msg="trial %d" % trial)
                thr = 2.0 if best["threshold"] is None else best["threshold"]
                self.assertAlmostEqual(ev.raw_score(files, profile, thr)[0], best["raw"],
                                       places=9)

    def test_pointwise_metrics(self):
        # labels     0 0 1 1 0 0 0 1 0 0
        # detections 0 1 1 0 0 0 0 1 0 0
        # tp = 2 (records 2, 7), fp = 1 (record 1), fn = 1 (record 3), tn = 6:
        # precision 2/3, recall 2/3, F1 2*2/(2*2 + 1 + 1) = 2/3,
        # false-alarm rate 1/(1 + 6) = 1/7, missed-alarm rate 1/(2 + 1) = 1/3.
        m = ev.pointwise([0, 0, 1, 1, 0, 0, 0, 1, 0, 0], [0, 1, 1, 0, 0, 0, 0, 1, 0, 0])
        self.assertEqual((m["tp"], m["fp"], m["fn"], m["tn"]), (2, 1, 1, 6))
        self.assertAlmostEqual(m["precision"], 2 / 3)
        self.assertAlmostEqual(m["recall"], 2 / 3)
        self.assertAlmostEqual(m["f1"], 2 / 3)
        self.assertAlmostEqual(m["false_alarm_rate"], 1 / 7)
        self.assertAlmostEqual(m["missed_alarm_rate"], 1 / 3)
        # No detection at all: precision is undefined, not 0 or 1.
        m = ev.pointwise([0, 1], [0, 0])
        self.assertIsNone(m["precision"])
        self.assertEqual(m["recall"], 0.0)

    def test_windows_from_labels_and_timestamps(self):
        self.assertEqual(ev.labels_to_windows([10, 20, 30, 40, 50, 60], [0, 1, 1, 0, 1, 1]),
                         [(20, 30), (50, 60)])
        # A repeated timestamp (NAB has some where clocks went back) stays in file order.
        ranges, empty = ev.window_ranges([1, 2, 3, 3, 4, 5], [(3, 4), (7, 9)])
        self.assertEqual(ranges, [(2, 4)])
        self.assertEqual(empty, [(7, 9)])
        self.assertEqual(ev.parse_ts("2014-07-01T00:00:00.000000Z"),
                         ev.parse_ts("2014-07-01 00:00:00"))
        self.assertEqual(ev.parse_ts("2014-07-01 02:00:00.5+02:00"),
                         ev.parse_ts("2014-07-01T00:00:00.500Z"))
        self.assertEqual(ev.parse_ts("1970-01-01T00:00:01.000001Z"), 1000001)
        with self.assertRaises(ValueError):
            ev.parse_ts("01/07/2014 00:00")


class EventMetricsTest(ewtest.unittest.TestCase):
    """ev.flag_runs, ev.events_to_rows and ev.event_metrics on hand-made rows, one
    a minute (60 s) unless said otherwise."""

    TS = [i * 60_000_000 for i in range(20)]

    def test_flag_runs(self):
        self.assertEqual(ev.flag_runs([0, 1, 1, 0, 1, 0, 0, 1]), [(1, 2), (4, 4), (7, 7)])
        self.assertEqual(ev.flag_runs([]), [])
        self.assertEqual(ev.flag_runs([1, 1]), [(0, 1)])

    def test_events_to_rows(self):
        # Event times are sample times: first row at/after the start, last at/before
        # the end; an open event (end None) lasts to the last row; one wholly after
        # the last row is counted apart.
        evs = [{"start": self.TS[3], "end": self.TS[5]},
               {"start": self.TS[4] + 1, "end": self.TS[4] + 2},    # between rows 4 and 5
               {"start": self.TS[17], "end": None},
               {"start": self.TS[19] + 60_000_000, "end": None}]
        rows, outside = ev.events_to_rows(self.TS, evs)
        self.assertEqual(rows, [(3, 5), (5, 5), (17, 19)])
        self.assertEqual(outside, 1)
        # A clock that goes back (NAB repeats some hours): events are matched in
        # stream order (their ids) to the rows with exactly their times.
        back = [0, 60, 120, 60, 120, 180, 240]
        evs = [{"id": 1, "start": 60, "end": 120}, {"id": 2, "start": 60, "end": 180},
               {"id": 3, "start": 240, "end": None}]
        rows, outside = ev.events_to_rows(back, evs)
        self.assertEqual(rows, [(1, 2), (3, 5), (6, 6)])
        self.assertEqual(outside, 0)
        with self.assertRaises(ev.EvalError) as cm:
            ev.events_to_rows(back, [{"id": 1, "start": 61, "end": None}])
        self.assertIn("which is no row's timestamp", str(cm.exception))

    def test_event_metrics_by_hand(self):
        # 20 rows; windows 8..11 and 15..16; rows 0..2 not scored (first = 3).
        # Events: 1..2 (before the scored rows: dropped), 2..4 (cut to 3..4: a false
        # event), 6..6 (false), 7..9 (begins before window 1: delay 0), 10..10 (also
        # window 1), 17..18 (false: window 2 ended at 16).
        # -> events 5, false 3, windows detected 1 of 2 (window 2 missed),
        #    events per window (2 + 0) / 2 = 1, delay mean 0 rows, 0 s;
        #    normal rows: 17 scored - 4 - 2 in windows = 11, 11 * 60 s = 660 s,
        #    false events per day 3 / (660 / 86400) = 392.7272...
        events = [(1, 2), (2, 4), (6, 6), (7, 9), (10, 10), (17, 18)]
        m = ev.event_metrics(self.TS, [(8, 11), (15, 16)], events, first=3)
        self.assertEqual((m["events"], m["false_events"], m["detected"], m["missed"]),
                         (5, 3, 1, 1))
        self.assertEqual(m["normal_rows"], 11)
        self.assertAlmostEqual(m["normal_seconds"], 660.0)
        self.assertAlmostEqual(m["false_events_per_day"], 3 / (660 / 86400))
        self.assertEqual(m["events_per_window"], 1.0)
        self.assertEqual(m["events_per_detected_window"], 2.0)
        self.assertEqual((m["delay_rows_mean"], m["delay_seconds_mean"]), (0.0, 0.0))
        self.assertEqual([w["events"] for w in m["windows"]], [2, 0])
        self.assertIsNone(m["windows"][1]["delay_rows"])
        # An event starting inside: window 8..11 with events 10..12 and 11..11:
        # delay 2 rows, 120 s (from the earliest one); events per window 2.
        m = ev.event_metrics(self.TS, [(8, 11)], [(11, 11), (10, 12)])
        self.assertEqual((m["delay_rows_mean"], m["delay_seconds_mean"]), (2.0, 120.0))
        self.assertEqual((m["events"], m["false_events"], m["events_per_window"]), (2, 0, 2.0))
        # No window at all: every event is false; the window figures are undefined.
        m = ev.event_metrics(self.TS, [], [(0, 1), (5, 5)])
        self.assertEqual((m["false_events"], m["detected"]), (2, 0))
        self.assertIsNone(m["events_per_window"])
        self.assertIsNone(m["delay_rows_mean"])
        self.assertAlmostEqual(m["false_events_per_day"], 2 / (20 * 60 / 86400))

    def test_normal_time_uses_the_median_interval(self):
        # Rows at 0, 60, 120, then a 10-hour gap, 36120, 36180 s: the median step is
        # 60 s, so 5 normal rows are 300 s (the gap is not time watched).
        ts = [t * 1_000_000 for t in (0, 60, 120, 36120, 36180)]
        m = ev.event_metrics(ts, [], [(1, 1)])
        self.assertAlmostEqual(m["normal_seconds"], 300.0)
        self.assertAlmostEqual(m["false_events_per_day"], 86400 / 300)

    def test_merge_pools_windows_and_time(self):
        a = ev.event_metrics(self.TS, [(8, 11)], [(9, 9), (2, 2)])      # delay 1, 1 false
        b = ev.event_metrics(self.TS, [(5, 6)], [])                     # missed
        m = ev.merge_event_metrics([a, b])
        # windows 2, detected 1; false 1 over (16 + 18) * 60 s; delay 1 row, 60 s.
        self.assertEqual((m["window_count"], m["detected"], m["false_events"]), (2, 1, 1))
        self.assertAlmostEqual(m["normal_seconds"], 34 * 60.0)
        self.assertEqual((m["delay_rows_mean"], m["delay_seconds_mean"]), (1.0, 60.0))
        self.assertEqual(m["events_per_window"], 0.5)


def ts_of(i):
    """The i-th timestamp of the hand-made files: one a minute from 2026-01-01."""
    return "2026-01-01T%02d:%02d:00.000000Z" % (i // 60, i % 60)


class EvaluateCliTest(ewtest.EdgewatchTest):
    """tools/evaluate on hand-made files (and, in the last test, on a real run)."""

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def labels_csv(self, labels, name="labels.csv"):
        lines = ["timestamp,value,label"] + ["%s,%d,%d" % (ts_of(i).replace("T", " ")[:19], i, l)
                                             for i, l in enumerate(labels)]
        return self.write(name, "\n".join(lines) + "\n")

    def jsonl(self, scores, flags, name="out.jsonl", node="det"):
        lines = [json.dumps({"ts": ts_of(i), "node": node, "score": s, "anomaly": bool(a),
                             "values": {"value": i}})
                 for i, (s, a) in enumerate(zip(scores, flags))]
        return self.write(name, "".join(l + "\n" for l in lines))

    def evaluate(self, *args):
        return subprocess.run([sys.executable, EVALUATE] + list(args), capture_output=True,
                              text=True, timeout=60)

    def test_labelled_csv_metrics(self):
        # The labels and detections of test_pointwise_metrics, as files; scores make the
        # threshold matter: 0.9 on the flagged records, 0.4 on record 3.
        labels = [0, 0, 1, 1, 0, 0, 0, 1, 0, 0]
        flags = [0, 1, 1, 0, 0, 0, 0, 1, 0, 0]
        scores = [0.9 if a else 0.0 for a in flags]
        scores[3] = 0.4
        lab, out = self.labels_csv(labels), self.jsonl(scores, flags)
        r = self.evaluate("--labels", lab, out, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        p = rep["pointwise"]
        self.assertEqual((p["tp"], p["fp"], p["fn"], p["tn"]), (2, 1, 1, 6))
        self.assertAlmostEqual(p["f1"], 2 / 3)
        self.assertAlmostEqual(p["false_alarm_rate"], 1 / 7)
        # Two windows (records 2..3 and 7); probation floor(1.5) = 1 record.
        self.assertEqual((rep["windows"], rep["probation"]), (2, 1))
        self.assertEqual(set(rep["nab"]), {"standard", "reward_low_FP_rate", "reward_low_FN_rate"})
        # --threshold 0.4 adds record 3: tp 3, fn 0 -> recall 1, precision 3/4.
        r = self.evaluate("--labels", lab, out, "--json", "--threshold", "0.4")
        self.assertEqual(r.returncode, 0, r.stderr)
        p = json.loads(r.stdout)["pointwise"]
        self.assertEqual((p["tp"], p["fp"], p["fn"]), (3, 1, 0))
        self.assertAlmostEqual(p["precision"], 0.75)
        self.assertEqual(p["missed_alarm_rate"], 0.0)
        # The text report names every figure.
        r = self.evaluate("--labels", lab, out)
        self.assertEqual(r.returncode, 0, r.stderr)
        for word in ("precision", "recall", "F1", "false-alarm rate", "missed-alarm rate",
                     "standard", "reward_low_FP_rate", "reward_low_FN_rate"):
            self.assertIn(word, r.stdout)
        self.assertIn("0.6667", r.stdout)

    def test_nab_label_file(self):
        # 20 records, a window over records 8..11 given as NAB gives it, record 8 fires:
        # the perfect detector of ScorerTest -> 100 in each profile.
        windows = self.write("combined_windows.json", json.dumps(
            {"grp/file.csv": [[ts_of(8).replace("T", " ").rstrip("Z"),
                               ts_of(11).replace("T", " ").rstrip("Z")]],
             "grp/other.csv": []}))
        out = self.jsonl(scores_with(r8=1.0), [i == 8 for i in range(N)])
        r = self.evaluate("--windows", windows, "--file", "grp/file.csv", out, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        for name, res in rep["nab"].items():
            self.assertAlmostEqual(res["normalised"], 100.0, places=9, msg=name)
        self.assertEqual(rep["pointwise"]["tp"], 1)
        self.assertEqual(rep["pointwise"]["fn"], 3)      # records 9..11 of the window
        # The bare file name is enough when it is unambiguous; a wrong one is an error.
        r = self.evaluate("--windows", windows, "--file", "file.csv", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.evaluate("--windows", windows, "--file", "grp/nope.csv", out)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no windows for 'grp/nope.csv'", r.stderr)

    def test_errors_are_clear(self):
        labels = [0, 0, 1, 0]
        lab = self.labels_csv(labels)
        cases = []
        # Mismatched timestamps: row 3 is a minute off.
        lines = [json.dumps({"ts": ts_of(i if i != 2 else 30), "node": "det", "score": 0.1,
                             "anomaly": False}) for i in range(4)]
        cases.append(("\n".join(lines) + "\n", "timestamps differ at row 3"))
        # Fewer rows than labels (a sink with only = anomalies, say).
        lines = [json.dumps({"ts": ts_of(i), "node": "det", "score": 0.1, "anomaly": False})
                 for i in range(3)]
        cases.append(("\n".join(lines) + "\n", "has 4 rows and"))
        # A missing field, named with file and line.
        lines = [json.dumps({"ts": ts_of(i), "node": "det", "anomaly": False}) for i in range(4)]
        cases.append(("\n".join(lines) + "\n", "out.jsonl:1: no \"score\" field"))
        # Not JSON.
        cases.append(("{\"ts\": \n", "out.jsonl:1: not a JSON line"))
        # Empty.
        cases.append(("", "is empty"))
        # A score that is not a number (null is one: a sample taken to learn).
        lines = [json.dumps({"ts": ts_of(i), "node": "det", "score": "high", "anomaly": False})
                 for i in range(4)]
        cases.append(("\n".join(lines) + "\n",
                      "\"score\" must be a finite number or null (a sample taken to learn), "
                      "not \"high\""))
        # Event records that are not ones.
        rec = {"ts": ts_of(1), "node": "det", "event": "maybe", "id": 1, "start": ts_of(1)}
        cases.append((json.dumps(rec) + "\n", "out.jsonl:1: \"event\" must be \"open\" or "
                      "\"closed\", not \"maybe\""))
        rec.update(event="open", start=5)
        cases.append((json.dumps(rec) + "\n", "out.jsonl:1: event record: \"start\" must be an "
                      "ISO-8601 timestamp string, not 5"))
        # Only event records: the samples are missing.
        rec.update(start=ts_of(1))
        cases.append((json.dumps(rec) + "\n", "holds event records but no sample line: give "
                      "the jsonl of every sample as the output and this file with --events"))
        # Two nodes.
        lines = [json.dumps({"ts": ts_of(0), "node": n, "score": 0.1, "anomaly": False})
                 for n in ("a", "b")]
        cases.append(("\n".join(lines) + "\n", "several nodes (a, b): choose one with --node"))
        for text, message in cases:
            out = self.write("out.jsonl", text)
            r = self.evaluate("--labels", lab, out)
            self.assertEqual(r.returncode, 1, "%s\n%s" % (message, r.stdout))
            self.assertIn(message, r.stderr)
            self.assertTrue(r.stderr.startswith("evaluate: "), r.stderr)
        out = self.jsonl([0.1] * 4, [0] * 4)
        # Labels that are not 0/1, a missing label column, an empty label file.
        bad = self.write("bad.csv", "timestamp,label\n2026-01-01 00:00:00,yes please\n")
        r = self.evaluate("--labels", bad, out)
        self.assertIn("bad.csv:2: label 'yes please' is not 0 or 1", r.stderr)
        two = self.write("two.csv", "timestamp,a,b\n2026-01-01 00:00:00,1,0\n")
        r = self.evaluate("--labels", two, out)
        self.assertIn("which column holds the labels?", r.stderr)
        r = self.evaluate("--labels", self.write("empty.csv", ""), out)
        self.assertIn("empty.csv is empty", r.stderr)
        r = self.evaluate("--labels", os.path.join(self.tmp, "missing.csv"), out)
        self.assertIn("cannot read", r.stderr)
        self.assertEqual(r.returncode, 1)

    def test_null_scores_are_not_detections(self):
        # Rows 0..3 were taken to learn (score null); labels 0 0 1 1 0 0 1 0 0 0.
        # The anomaly flag is set on rows 6 and 8; scores 0 elsewhere.
        # --threshold 0: every row with a score (0 too) is a detection, the null ones
        # are not: detections on rows 4..9 -> tp 1 (row 6), fp 5, fn 2 (rows 2, 3),
        # tn 2 (rows 0, 1).
        labels = [0, 0, 1, 1, 0, 0, 1, 0, 0, 0]
        lines = []
        for i in range(10):
            score = None if i < 4 else (0.9 if i in (6, 8) else 0.0)
            lines.append(json.dumps({"ts": ts_of(i), "node": "det", "score": score,
                                     "anomaly": i in (6, 8)}))
        out = self.write("out.jsonl", "\n".join(lines) + "\n")
        lab = self.labels_csv(labels)
        r = self.evaluate("--labels", lab, out, "--json", "--threshold", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        p = rep["pointwise"]
        self.assertEqual((p["tp"], p["fp"], p["fn"], p["tn"]), (1, 5, 2, 2))
        self.assertEqual(rep["learning_rows"], 4)
        # The flag: tp 1 (row 6), fp 1 (row 8); events are its runs: [6], [8].
        # Probation floor(1.5) = 1 row; windows 2..3 (missed), 6 (delay 0).
        r = self.evaluate("--labels", lab, out, "--json")
        rep = json.loads(r.stdout)
        p = rep["pointwise"]
        self.assertEqual((p["tp"], p["fp"], p["fn"], p["tn"]), (1, 1, 2, 6))
        e = rep["events"]
        self.assertEqual(rep["events_source"], "runs of anomaly flags")
        self.assertEqual((e["events"], e["false_events"], e["detected"], e["window_count"]),
                         (2, 1, 1, 2))
        # The NAB sweep reads the null scores as 0: the same result as with 0 written.
        zeros = self.write("zeros.jsonl", "\n".join(
            l.replace('"score": null', '"score": 0.0') for l in lines) + "\n")
        r0 = json.loads(self.evaluate("--labels", lab, zeros, "--json").stdout)
        self.assertEqual(rep["nab"], r0["nab"])
        self.assertIn("rows taken to learn", self.evaluate("--labels", lab, out).stdout)

    def event_lines(self):
        """Event records in the shape of a sink with only = events (a minute per row)."""
        def rec(state, eid, start, end, ts):
            return json.dumps({"ts": ts_of(ts), "node": "det", "event": state, "id": eid,
                               "start": ts_of(start), "end": None if end is None else ts_of(end),
                               "duration_s": 0.0 if end is None else 60.0 * (end - start),
                               "peak_score": 0.97, "peak_ts": ts_of(start), "samples": 1,
                               "channels": [{"name": "value", "share": 1.0}]})
        return [rec("open", 1, 1, None, 1), rec("closed", 1, 1, 2, 2),
                rec("open", 2, 5, None, 5), rec("closed", 2, 5, 6, 6),
                rec("open", 3, 9, None, 9), rec("closed", 3, 9, 12, 12),
                rec("open", 4, 10, None, 10), rec("closed", 4, 10, 10, 10),
                rec("open", 5, 16, None, 16)]

    def test_event_records(self):
        # 20 rows, windows 8..11 and 15..16, probation floor(3) = 3 rows. Event records:
        # 1: rows 1..2 (probation: not scored); 2: 5..6 (false); 3: 9..12 and 4: 10..10
        # (window 1, delay 1 row = 60 s); 5: opened at 16, never closed: lasts to row 19
        # (window 2, delay 1 row). -> 4 events, 1 false, 2 of 2 windows, delay 1 row,
        # 60 s, events per window (2 + 1) / 2 = 1.5; normal rows 17 - 6 = 11 = 660 s,
        # false events per day 1 / (660 / 86400) = 130.909.
        # The flag is set on row 9 alone: with records, the records are the events.
        labels = [1 if 8 <= i <= 11 or 15 <= i <= 16 else 0 for i in range(20)]
        lab = self.labels_csv(labels)
        samples = [json.dumps({"ts": ts_of(i), "node": "det", "score": 0.9 if i == 9 else 0.1,
                               "anomaly": i == 9}) for i in range(20)]
        events = self.event_lines()
        # Mixed in (records interleaved where a sink would write them, out of order).
        mixed = self.write("mixed.jsonl", "\n".join(samples[:10] + events + samples[10:]) + "\n")
        apart = self.write("samples.jsonl", "\n".join(samples) + "\n")
        ev_file = self.write("events.jsonl", "\n".join(events) + "\n")
        for args in ((mixed,), (apart, "--events", ev_file)):
            r = self.evaluate("--labels", lab, "--json", *args)
            self.assertEqual(r.returncode, 0, r.stderr)
            rep = json.loads(r.stdout)
            e = rep["events"]
            self.assertEqual(rep["events_source"], "event records")
            self.assertEqual((e["events"], e["false_events"], e["detected"], e["window_count"]),
                             (4, 1, 2, 2))
            self.assertEqual((e["delay_rows_mean"], e["delay_seconds_mean"]), (1.0, 60.0))
            self.assertEqual(e["events_per_window"], 1.5)
            self.assertEqual(e["normal_rows"], 11)
            self.assertAlmostEqual(e["false_events_per_day"], 86400 / 660)
            # The samples are scored as before.
            self.assertEqual(rep["pointwise"]["tp"], 1)
        # --threshold: events are the runs of score >= 0.5 instead: row 9 alone ->
        # window 1 found (delay 1), window 2 missed, no false event.
        r = self.evaluate("--labels", lab, "--json", mixed, "--threshold", "0.5")
        rep = json.loads(r.stdout)
        e = rep["events"]
        self.assertEqual(rep["events_source"], "runs of score >= 0.5")
        self.assertEqual((e["events"], e["false_events"], e["detected"]), (1, 0, 1))
        # An empty events file (a run without alerts) is no events, not an error.
        empty = self.write("none.jsonl", "")
        r = self.evaluate("--labels", lab, "--json", apart, "--events", empty)
        self.assertEqual(r.returncode, 0, r.stderr)
        e = json.loads(r.stdout)["events"]
        self.assertEqual((e["events"], e["detected"]), (0, 0))
        # The text report.
        r = self.evaluate("--labels", lab, mixed)
        self.assertIn("events (event records): 4; windows detected 2 of 2, missed 0", r.stdout)
        self.assertIn("false events 1 (130.91 per day of normal time", r.stdout)

    def pipeline_run(self, data_csv, out):
        config = self.write_config(self.pipeline() + """
[source.data]
plugin = csv
path = %s

[detector.det]
plugin = zscore
input = data
window = 50
; zscore's own score and flag: these tests are of the tools, not of the host's
; calibration
calibrate = none

[sink.out]
plugin = jsonl
input = det
path = %s
""" % (data_csv, out))
        proc = self.start("run", config)
        self.addCleanup(proc.kill)
        code = proc.wait(60)
        self.assertEqual(code, 0, proc.output())

    def test_real_pipeline_output(self):
        # 400 rows of a noisy sine with one spike at row 300 and its label window over
        # rows 295..305 (11 rows). zscore (window 50) gives the spike by far the highest
        # z, so the sweep fires on it alone: y = -(305 - 300 + 1)/11 = -6/11,
        # worth sig(-6/11)/sig(-1) = 0.8891355, no false alarm;
        # normalised 100 * (0.8891355 + 1)/2 = 94.45677.
        rng = random.Random(5)
        rows, labels = [], []
        for i in range(400):
            v = 10 + math.sin(i / 10) + rng.gauss(0, 0.1)
            if i == 300:
                v += 8
            rows.append("%s,%.6f" % (ts_of(i).replace("T", " ")[:19], v))
            labels.append(1 if 295 <= i <= 305 else 0)
        data = self.write("data.csv", "timestamp,value\n" + "\n".join(rows) + "\n")
        lab = self.labels_csv(labels)
        out = os.path.join(self.tmp, "out.jsonl")
        self.pipeline_run(data, out)
        r = self.evaluate("--labels", lab, out, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        std = rep["nab"]["standard"]
        self.assertEqual((std["tp"], std["fp"], std["fn"]), (1, 0, 0))
        self.assertAlmostEqual(std["normalised"], 94.45677, places=4)
        # Point-wise with the anomaly flag: the spike is found (z far above 3).
        self.assertGreaterEqual(rep["pointwise"]["tp"], 1)

    def test_nab_tool_on_a_small_corpus(self):
        # A two-file corpus in NAB's layout (made here): a.csv with a spike in its window,
        # b.csv with no window and no spike. tools/nab runs the real binary over both.
        # a: 300 rows, probation 45; spike at 200 inside window 190..209 (20 rows):
        # y = -(209 - 200 + 1)/20 = -0.5, sig(-0.5)/sig(-1) = 0.8597926 (sig(-0.5) =
        # 2/(1 + e^-2.5) - 1 = 0.8482836). b adds no window and (the spike being the
        # highest z of both files) no false alarm: normalised 100 * 1.8597926/2 = 92.98963.
        corpus = os.path.join(self.tmp, "nab")
        os.makedirs(os.path.join(corpus, "data", "g"))
        os.makedirs(os.path.join(corpus, "labels"))
        rng = random.Random(9)
        for name, spike in (("a.csv", 200), ("b.csv", None)):
            rows = []
            for i in range(300):
                v = 5 + rng.gauss(0, 0.2) + (6 if i == spike else 0)
                rows.append("%s,%.5f" % (ts_of(i).replace("T", " ")[:19], v))
            self.write(os.path.join("nab", "data", "g", name),
                       "timestamp,value\n" + "\n".join(rows) + "\n")
        self.write(os.path.join("nab", "labels", "combined_windows.json"), json.dumps(
            {"g/a.csv": [[ts_of(190).replace("T", " ").rstrip("Z"),
                          ts_of(209).replace("T", " ").rstrip("Z")]],
             "g/b.csv": []}))
        config = self.write("det.ini", "[detector.det]\nplugin = zscore\ninput = data\n"
                                       "window = 40\ncalibrate = none\n")
        build = os.path.dirname(os.path.dirname(ewtest.BIN))
        r = subprocess.run([sys.executable, NAB, "--config", config, "--build", build,
                            "--data", corpus, "--json"], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        self.assertEqual((rep["files"], rep["rows"]), (2, 600))
        std = rep["scores"]["standard"]
        self.assertEqual((std["tp"], std["fp"], std["fn"]), (1, 0, 0))
        self.assertAlmostEqual(std["normalised"], 92.98963, places=4)
        # Events (the flag's runs, or records where the host writes them): the spike at
        # row 200 is flagged, so the one window is found 10 rows (600 s) in.
        e = rep["events"]
        self.assertEqual((e["window_count"], e["detected"]), (1, 1))
        self.assertEqual((e["delay_rows_mean"], e["delay_seconds_mean"]), (10.0, 600.0))
        self.assertEqual(e["windows"][0]["file"], "g/a.csv")
        # Normal time: (300 - 45) rows of each file, less the 20 of the window, a minute each.
        self.assertAlmostEqual(e["normal_seconds"], (2 * 255 - 20) * 60.0)
        # A fragment without [detector.det] is refused with the reason.
        bad = self.write("bad.ini", "[detector.x]\nplugin = zscore\ninput = data\n")
        r = subprocess.run([sys.executable, NAB, "--config", bad, "--build", build,
                            "--data", corpus], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no [detector.det] section", r.stderr)


if __name__ == "__main__":
    ewtest.unittest.main()
