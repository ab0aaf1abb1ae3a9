"""The example pipelines in configs/ stay valid: `edgewatch check` accepts every
one of them (plugins found, options and graph valid), and the demo (all three
detectors) runs, serves /health, prints alert events and stops cleanly on SIGTERM, closing every open event."""

import glob
import json
import os
import signal
import time

import ewtest


class ConfigsTest(ewtest.EdgewatchTest):

    def test_every_example_passes_check(self):
        configs = sorted(glob.glob(os.path.join(ewtest.SOURCE_DIR, "configs", "*.ini")))
        self.assertGreaterEqual(len(configs), 5, configs)
        csv = os.path.join(self.tmp, "data.csv")
        with open(csv, "w", encoding="utf-8") as f:
            f.write("timestamp,value\n2024-01-01 00:00:00,1\n")
        for path in configs:
            with self.subTest(config=os.path.basename(path)):
                result = self.cli("check", path, env=self.env(CSV=csv))
                self.assertExit(result, ewtest.EXIT_OK)
                self.assertIn("configuration OK", result.stdout)

    def test_demo_runs_and_stops_cleanly(self):
        port = ewtest.free_port()
        demo = os.path.join(ewtest.SOURCE_DIR, "configs", "demo.ini")
        proc = self.start("run", demo, env=self.env(EDGEWATCH_HTTP="127.0.0.1:%d" % port))
        _, _, body = self.wait_http(proc, port)
        self.assertEqual(json.loads(body)["status"], "ok")
        # The demo paces 20 samples/s with injected anomalies; give it time to raise some.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not proc.stdout().strip():
            time.sleep(0.2)
        self.assertEqual(self.stop(proc, signal.SIGTERM), ewtest.EXIT_OK, proc.output())
        events = [json.loads(line) for line in proc.stdout().splitlines()]
        self.assertGreater(len(events), 0, "the demo printed no event in 30 s\n" + proc.output())
        channels = {"temperature", "pressure", "vibration"}
        for ev in events:
            self.assertIn(ev["event"], ("open", "closed"), ev)
            self.assertIn(ev["node"], ("pump_z", "pump_if", "pump_ae"), ev)
            self.assertNotIn("values", ev, "the demo prints events, not samples")
            self.assertTrue(ev["channels"], ev)
            self.assertLessEqual({c["name"] for c in ev["channels"]}, channels, ev)
        # Every event still open at the stop was closed and printed.
        opened = {(e["node"], e["id"]) for e in events if e["event"] == "open"}
        closed = {(e["node"], e["id"]) for e in events if e["event"] == "closed"}
        self.assertEqual(opened, closed, events)
        self.assertIn("pipeline demo stopped cleanly", proc.stderr())


if __name__ == "__main__":
    ewtest.main()
