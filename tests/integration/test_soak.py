"""The soak in CI: tools/soak for 60 s at 20,000 samples/s (a fifth of the full
run's 100,000/s, so that it passes on a loaded 2-core machine shared with other
builds), plus the soak's own verdicts on made-up figures, so that a soak that
cannot fail would be caught here.

The full run (10 minutes at 100,000/s) and its figures: docs/reliability.md.
"""

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ewtest  # noqa: E402

SOAK = os.path.join(ewtest.SOURCE_DIR, "tools", "soak")
BUILD = os.path.dirname(os.path.dirname(os.path.abspath(ewtest.BIN)))
DURATION = 60
RATE = 20000


def load_soak():
    """tools/soak as a module (it has no .py suffix)."""
    loader = importlib.machinery.SourceFileLoader("ew_soak", SOAK)
    spec = importlib.util.spec_from_loader("ew_soak", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


soak = load_soak()


class SoakVerdicts(unittest.TestCase):
    """The soak's pass/fail rules on figures made up to break exactly one rule."""

    def consistent(self):
        """finished lines and external counts of a run where nothing was lost."""
        out = {"bulk": 1000, "zin": 200, "replay": 30, "board": 20, "meter": 5}
        fin = {}
        for node, ups in soak.GRAPH.items():
            n = out[node] if not ups else sum(fin[u]["out"] for u in ups)
            fin[node] = {"how": "ended", "in": 0 if not ups else n, "out": n, "dropped": 0,
                         "anomalies": 0}
        ext = {"zmq_sent": 200, "serial_sent": 20, "csv_rows": 100, "null_samples": 1000,
               "jsonl_lines": 205, "jsonl_files": 1, "mqtt_lines": 51, "mqtt_distinct": 50,
               "mqtt_bad": 0}
        return fin, ext

    def test_nothing_lost_passes(self):
        fin, ext = self.consistent()
        self.assertEqual(soak.loss_check(fin, ext, []), [])

    def test_every_kind_of_loss_is_named(self):
        cases = [
            (lambda f, e: f["z_bulk"].update({"in": 999}), "z_bulk received 999 samples"),
            (lambda f, e: f["if_zmq"].update({"out": 199}), "if_zmq received 200 samples but emitted 199"),
            (lambda f, e: f["out"].update({"out": 204}), "out received 205 samples but delivered 204"),
            (lambda f, e: f["bulk"].update({"dropped": 3}), "bulk dropped 3 samples"),
            (lambda f, e: e.update({"zmq_sent": 201}), "zmq: 201 messages sent, the source emitted 200"),
            (lambda f, e: e.update({"serial_sent": 21}), "serial: 21 lines written"),
            (lambda f, e: e.update({"csv_rows": 30}), "the csv replay reached the end"),
            (lambda f, e: e.update({"null_samples": None}), "null sink reported None samples"),
            (lambda f, e: e.update({"jsonl_lines": 204}), "jsonl: 204 lines in 1 file(s)"),
            (lambda f, e: e.update({"mqtt_distinct": 49}), "mqtt: mosquitto_sub received 49"),
            (lambda f, e: f.pop("if_meter"), "no 'finished' line for node if_meter"),
        ]
        for change, message in cases:
            with self.subTest(message):
                fin, ext = self.consistent()
                change(fin, ext)
                failures = soak.loss_check(fin, ext, [])
                self.assertTrue(any(message in f for f in failures), failures)
        fin, ext = self.consistent()
        failures = soak.loss_check(fin, ext, ["uplink: 5 messages not yet acknowledged by broker "
                                              "x stay in the spool y"])
        self.assertEqual(len(failures), 1, failures)

    def series(self, rss, fds=40, threads=19, seconds=600):
        return [(float(t), rss(t), fds if isinstance(fds, int) else fds(t),
                 threads if isinstance(threads, int) else threads(t)) for t in range(seconds)]

    def test_flat_and_plateau_pass(self):
        flat = self.series(lambda t: 20 * soak.MIB + (t % 7) * 100000)
        self.assertEqual(soak.growth_check(flat, 600)[0], [])
        # Grows during warm-up (models learnt, queues filled), then stays.
        plateau = self.series(lambda t: min(t, 100) * 0.3 * soak.MIB + 10 * soak.MIB)
        self.assertEqual(soak.growth_check(plateau, 600)[0], [])

    def test_leaks_fail(self):
        rss_leak = self.series(lambda t: 20 * soak.MIB + t * 40 * 1024)  # 2.3 MiB/min
        failures = soak.growth_check(rss_leak, 600)[0]
        self.assertEqual(len(failures), 1, failures)
        self.assertIn("rss grows without bound", failures[0])
        fd_leak = self.series(lambda t: 20 * soak.MIB, fds=lambda t: 40 + t // 30)
        failures = soak.growth_check(fd_leak, 600)[0]
        self.assertEqual(len(failures), 1, failures)
        self.assertIn("fds grows without bound", failures[0])
        thread_leak = self.series(lambda t: 20 * soak.MIB, threads=lambda t: 19 + t // 60)
        failures = soak.growth_check(thread_leak, 600)[0]
        self.assertEqual(len(failures), 1, failures)
        self.assertIn("threads grows without bound", failures[0])

    def test_a_step_that_stops_is_not_a_leak(self):
        # One more file open for good at 200 s (e.g. a rotated output): no slope afterwards.
        step = self.series(lambda t: 20 * soak.MIB, fds=lambda t: 40 if t < 200 else 46)
        self.assertEqual(soak.growth_check(step, 600)[0], [])


class SoakRun(ewtest.EdgewatchTest):
    def test_soak_60s_at_20000_per_second(self):
        report = os.path.join(self.tmp, "soak.json")
        out, err = os.path.join(self.tmp, "soak.out"), os.path.join(self.tmp, "soak.err")
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(
                ["/usr/bin/python3", SOAK, "--build", BUILD, "--duration", str(DURATION),
                 "--rate", str(RATE), "--json", report],
                stdin=subprocess.DEVNULL, stdout=o, stderr=e)
        try:
            code = proc.wait(timeout=DURATION + 150)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the soak stops its peers and edgewatch on SIGTERM
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = None
        with open(out, encoding="utf-8", errors="replace") as f:
            stdout = f.read()
        with open(err, encoding="utf-8", errors="replace") as f:
            stderr = f.read()
        self.assertIsNotNone(code, "tools/soak did not finish within %d s\n%s\n%s" % (
            DURATION + 150, stdout, stderr[-3000:]))
        r = subprocess.CompletedProcess(proc.args, code, stdout, stderr)
        self.assertEqual(r.returncode, 0, "tools/soak failed:\n%s\n%s" % (r.stdout, r.stderr[-3000:]))
        self.assertIn("PASS: no growth, no loss", r.stdout)
        with open(report, encoding="utf-8") as f:
            fig = json.load(f)
        self.assertEqual(fig["failures"], [])
        self.assertEqual(fig["exit_code"], 0)
        fin = fig["finished"]
        # Every source sent something and every sample reached a sink: the graph is a
        # tree, so what the sources emitted is what the three sinks delivered.
        for node in soak.SOURCES:
            self.assertGreater(fin[node]["out"], 0, node)
        sources = sum(fin[n]["out"] for n in soak.SOURCES)
        sinks = sum(fin[n]["out"] for n in soak.SINKS)
        self.assertEqual(sources, sinks)
        self.assertEqual(fig["zmq_sent"], fin["zin"]["out"])
        self.assertEqual(fig["serial_sent"], fin["board"]["out"])
        self.assertEqual(fig["mqtt_distinct"], fin["uplink"]["out"])
        self.assertEqual(fig["jsonl_lines"], fin["out"]["out"])
        self.assertGreaterEqual(fig["achieved_rate"], 0.9 * RATE)
        # ok on every answered poll (the soak tolerates up to two unanswered in a row).
        self.assertLessEqual(set(fig["health"]), {"ok", "unanswered"}, fig["health"])
        self.assertGreaterEqual(fig["health"]["ok"], DURATION - 5, fig["health"])
        self.assertGreaterEqual(fig["samples"], DURATION - 2)
        # The summary table names every node.
        for node in soak.GRAPH:
            self.assertRegex(r.stdout, r"(?m)^%s\s" % node)


if __name__ == "__main__":
    ewtest.main()
