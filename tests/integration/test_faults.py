"""The host's fault handling end to end, with test plugins that fail on purpose
(tests/fixtures/flaky): a source that fails transiently is retried with backoff
and reported as retrying in /health, then resumes with nothing lost; a sink that
refuses deliveries gets the same batches again; a fatal error stops the graph
with exit 1; on_full = drop drops and counts instead of blocking."""

import json
import os
import re
import signal
import time

import ewtest

FLAKY = os.environ.get("EW_FLAKY_PLUGINS",
                       os.path.join(ewtest.SOURCE_DIR, "build", "tests", "fixtures", "flaky"))

FINISHED = re.compile(r"\[(\S+)\] finished \((\w+)\): samples_in=(\d+) samples_out=(\d+) dropped=(\d+)")
RECEIVED = re.compile(r"flaky sink received (\d+) samples, first channel sum (-?\d+)")


def finished(stderr):
    """{node: (state, samples_in, samples_out, dropped)} from the finish lines."""
    return {m.group(1): (m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5)))
            for m in FINISHED.finditer(stderr)}


class FaultTest(ewtest.EdgewatchTest):

    def config(self, body, **pipeline):
        return self.write_config(self.pipeline(plugin_path=FLAKY, **pipeline) + body)

    def test_sigterm_while_a_node_is_stuck_in_init_is_honoured(self):
        # A csv path that is a FIFO nobody writes blocks the source's init in
        # open(): SIGTERM used to wait for ever. Now the stop is bounded by
        # shutdown_timeout and says which node it left behind.
        fifo = os.path.join(self.tmp, "never.csv")
        os.mkfifo(fifo)
        path = self.write_config(self.pipeline(shutdown_timeout="1s") + """
[source.stuck]
plugin = csv
path = %s

[sink.out]
plugin = null
input = stuck
""" % fifo)
        proc = self.start("run", path)
        time.sleep(0.5)
        self.assertTrue(proc.running(), proc.output())
        t0 = time.monotonic()
        proc.signal(signal.SIGTERM)
        code = self.wait_exit(proc, 15)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(code, ewtest.EXIT_RUNTIME, proc.output())
        err = proc.stderr()
        self.assertIn("during start-up: stopping (node stuck is starting)", err)
        self.assertIn("[stuck] still starting (in the plugin's init)", err)

    def test_a_return_code_the_sdk_does_not_allow_fails_the_node(self):
        # EW_EINVAL (-6) and a positive value from consume used to end the sink's
        # loop quietly: upstream then blocked for ever while /health said ok.
        for code in (-6, 1):
            with self.subTest(code=code):
                path = self.config("""
[source.gen]
plugin = flaky
count = 100000

[sink.out]
plugin = flaky
input = gen
fatal_after = 3
return_code = %d
""" % code)
                proc = self.start("run", path)
                self.assertEqual(self.wait_exit(proc, 30), ewtest.EXIT_RUNTIME, proc.output())
                err = proc.stderr()
                self.assertIn("plugin fault: consume returned %d, a code the SDK does not allow" % code, err)
                self.assertIn("[out] finished (failed)", err)

    def test_only_events_on_a_sink_without_events_is_refused(self):
        path = self.write_config(self.pipeline(plugin_path="%s:%s" % (FLAKY, ewtest.PLUGIN_PATH)) + """
[source.gen]
plugin = synth
channels = x
count = 10

[detector.z]
plugin = zscore
input = gen

[sink.out]
plugin = flaky
input = z
only = events
""")
        for command in ("check", "run"):
            r = self.cli(command, path)
            self.assertExit(r, ewtest.EXIT_USAGE)
            self.assertIn("takes no alert events", r.stderr)
            line = open(path, encoding="utf-8").read().split("\n").index("only = events") + 1
            self.assertIn("pipeline.ini:%d: [sink.out] only:" % line, r.stderr)

    def test_transient_source_is_retried_and_reported(self):
        port = ewtest.free_port()
        count = 500
        path = self.config("""
[source.dev]
plugin = flaky
fail_first = 5
count = %d

[sink.out]
plugin = flaky
input = dev
""" % count, http="127.0.0.1:%d" % port)
        proc = self.start("run", path)
        # 100 + 200 + 400 + 800 ms (+-25 %) of backoff: /health says retrying meanwhile.
        seen_retrying = False
        for _ in range(40):
            try:
                status, _, body = ewtest.http_request(port, "GET", "/health", timeout=1.0)
            except OSError:
                status, body = None, ""
            if status == 503 and "dev" in json.loads(body).get("retrying", []):
                seen_retrying = True
                self.assertEqual(json.loads(body)["nodes"]["dev"]["state"], "retrying")
                self.assertIn("simulated device timeout", json.loads(body)["nodes"]["dev"]["error"])
                break
            if not proc.running():
                break
            time.sleep(0.05)
        self.assertTrue(seen_retrying, "never saw the source retrying in /health\n" + proc.output())
        code = self.wait_exit(proc, 30)
        err = proc.stderr()
        self.assertEqual(code, ewtest.EXIT_OK, proc.output())
        self.assertEqual(len(re.findall(r"produce failed \(transient, attempt \d\)", err)), 5, err)
        self.assertIn("recovered after 5 retries", err)
        m = RECEIVED.search(err)
        self.assertIsNotNone(m, err)
        self.assertEqual(int(m.group(1)), count)
        self.assertEqual(int(m.group(2)), count * (count - 1) // 2)  # every index exactly once

    def test_transient_sink_gets_the_same_batches_again(self):
        count = 3000
        path = self.config("""
[source.dev]
plugin = flaky
count = %d

[sink.out]
plugin = flaky
input = dev
fail_first = 3
""" % count)
        result = self.cli("run", path)
        self.assertExit(result, ewtest.EXIT_OK)
        self.assertEqual(len(re.findall(r"consume failed \(transient", result.stderr)), 3, result.stderr)
        m = RECEIVED.search(result.stderr)
        self.assertEqual(int(m.group(1)), count, result.stderr)
        self.assertEqual(int(m.group(2)), count * (count - 1) // 2)
        self.assertEqual(finished(result.stderr)["out"][3], 0)

    def test_fatal_error_stops_the_graph_with_exit_1(self):
        path = self.config("""
[source.gen]
plugin = synth
rate = 0
count = 0

[sink.out]
plugin = flaky
input = gen
fatal_after = 3
""")
        result = self.cli("run", path, timeout=30)
        self.assertExit(result, ewtest.EXIT_RUNTIME)
        self.assertIn("simulated fatal fault after 3 batches", result.stderr)
        self.assertRegex(result.stderr, r"\[out\] stopped by a fatal error")
        self.assertIn("node out failed: stopping the pipeline", result.stderr)

    def test_on_full_drop_counts_what_it_drops(self):
        count = 200000
        path = self.config("""
[source.gen]
plugin = synth
rate = 0
count = %d
on_full = drop

[sink.out]
plugin = flaky
input = gen
queue = 1
delay = 2ms
""" % count)
        result = self.cli("run", path, timeout=120)
        self.assertExit(result, ewtest.EXIT_OK)
        nodes = finished(result.stderr)
        _, _, gen_out, dropped = nodes["gen"]
        _, sink_in, _, _ = nodes["out"]
        self.assertEqual(gen_out, count)
        self.assertGreater(dropped, 0, "a slow sink behind queue = 1 should make the source drop")
        self.assertEqual(sink_in + dropped, count, result.stderr)
        m = RECEIVED.search(result.stderr)
        self.assertEqual(int(m.group(1)), sink_in)

    def test_block_is_the_default_and_loses_nothing(self):
        count = 20000
        path = self.config("""
[source.gen]
plugin = synth
rate = 0
count = %d

[sink.out]
plugin = flaky
input = gen
queue = 1
delay = 1ms
""" % count)
        result = self.cli("run", path, timeout=120)
        self.assertExit(result, ewtest.EXIT_OK)
        nodes = finished(result.stderr)
        self.assertEqual(nodes["gen"][3], 0)
        self.assertEqual(nodes["out"][1], count)


if __name__ == "__main__":
    ewtest.main()
