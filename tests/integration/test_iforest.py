"""End to end: the iforest detector learns on the device, saves its model through
the host's state files, scores from the first sample after a SIGKILL and a
restart, relearns when the state file is corrupt, shows `learning` in /health,
and replays a file to the same bytes on every run with its default background
training."""

import glob
import json
import os
import shutil
import random
import textwrap
import time

import ewtest

ROWS = 3000
TRAIN = 1000


def write_csv(path, rows=ROWS, seed=4):
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write("timestamp,a,b,c\n")
        for i in range(rows):
            vals = [rng.gauss(0, 1), rng.gauss(5, 2), rng.gauss(-1, 0.5)]
            if i % 200 == 199:
                vals = [v + 12 for v in vals]
            f.write("2026-01-01T%02d:%02d:%02d.000Z,%s\n" % (
                i // 3600, i // 60 % 60, i % 60, ",".join(repr(v) for v in vals)))


class IforestTest(ewtest.EdgewatchTest):

    def config(self, rate=0, train=TRAIN, http="off"):
        self.csv = os.path.join(self.tmp, "in.csv")
        if not os.path.exists(self.csv):
            write_csv(self.csv)
        self.out = os.path.join(self.tmp, "out.jsonl")
        return self.write_config(self.pipeline(http=http) + textwrap.dedent("""
            [source.rows]
            plugin = csv
            path = %s
            rate = %s

            [detector.forest]
            plugin = iforest
            input = rows
            train_samples = %d
            retrain_every = 0
            seed = 9

            [sink.out]
            plugin = jsonl
            input = forest
            path = %s
            flush = line
            """) % (self.csv, rate, train, self.out))

    def state_files(self, pattern="forest.bin"):
        return glob.glob(os.path.join(self.state_dir, "**", pattern), recursive=True)

    def clear_state(self):
        """Removes every node's state (the forest, and the host's scoring state)."""
        for entry in os.listdir(self.state_dir):
            shutil.rmtree(os.path.join(self.state_dir, entry), ignore_errors=True)

    def test_restart_after_sigkill_scores_from_the_first_sample(self):
        # Run 1, paced so that it is still running when the model is saved.
        proc = self.start("run", self.config(rate=1000))
        self.wait_for(lambda: self.state_files(), proc, "the model file", timeout=60)
        # Let some samples be scored with the trained model, then kill it hard.
        self.wait_for(lambda: any((l["score"] or 0) > 0 for l in self.lines()), proc,
                      "scored samples", timeout=60)
        time.sleep(0.3)
        proc.kill()
        first = self.lines()
        learnt = [i for i, l in enumerate(first) if (l["score"] or 0) > 0]
        self.assertTrue(learnt, "run 1 scored nothing with its model")
        # While learning: no score (the host writes learning rows empty), no
        # anomaly, no path length.
        self.assertTrue(all(not l["score"] and not l["anomaly"] and
                            l["values"]["path_length"] is None for l in first[:TRAIN]))

        os.unlink(self.out)
        r = self.cli("run", self.config(), timeout=120)
        self.assertExit(r, ewtest.EXIT_OK)
        self.assertIn("scoring from the first sample", r.stderr)
        self.assertNotIn("learning the model", r.stderr)
        second = self.lines()
        self.assertEqual(len(second), ROWS)
        self.assertTrue(all((l["score"] or 0) > 0 for l in second),
                        "run 2 did not score from sample 0")
        for i in learnt:
            self.assertEqual(second[i]["score"], first[i]["score"], "row %d" % i)
            self.assertEqual(second[i]["anomaly"], first[i]["anomaly"], "row %d" % i)
        # The planted outliers stand out.
        outliers = [second[i]["score"] for i in range(199, ROWS, 200)]
        normal = sorted(l["score"] for i, l in enumerate(second) if i % 200 != 199)
        self.assertGreater(min(outliers), normal[int(len(normal) * 0.99)])

    def test_corrupt_state_file_is_moved_aside_and_relearnt(self):
        r = self.cli("run", self.config(), timeout=120)
        self.assertExit(r, ewtest.EXIT_OK)
        (state,) = self.state_files()
        with open(state, "r+b") as f:
            f.seek(300)
            byte = f.read(1)
            f.seek(300)
            f.write(bytes([byte[0] ^ 0xFF]))
        os.unlink(self.out)
        r = self.cli("run", self.config(), timeout=120)
        self.assertExit(r, ewtest.EXIT_OK)
        aside = self.state_files("forest.bin.corrupt-*")
        self.assertEqual(len(aside), 1, r.stderr)
        self.assertRegex(r.stderr, r"forest\.bin.*corrupt|corrupt.*forest\.bin")
        self.assertIn("learning the model", r.stderr)
        lines = self.lines()
        self.assertTrue(all(not l["score"] for l in lines[:TRAIN]), "it did not relearn")
        # (At full speed the stream may end before the new forest is grown: the
        # end of the stream waits for it and saves it.)
        self.assertEqual(len(self.state_files()), 1, "the relearnt model was not saved")
        self.assertIn("model ready", r.stderr)

    def test_health_shows_learning_while_training(self):
        port = ewtest.free_port()
        proc = self.start("run", self.config(rate=200, train=1000000,
                                             http="127.0.0.1:%d" % port))
        _, _, body = self.wait_http(proc, port, "/health", timeout=15)
        self.assertIn("learning", body)
        _, _, metrics = self.wait_http(proc, port, "/metrics", timeout=5)
        self.assertIn("learning", metrics)
        self.assertEqual(self.stop(proc), 0)

    def test_windowed_replay_in_the_batch_is_deterministic(self):
        # background = false: the forest is grown in the batch, so two replays
        # at full speed give the same scores, with no unscored gap after training.
        self.csv = os.path.join(self.tmp, "in.csv")
        write_csv(self.csv)
        self.out = os.path.join(self.tmp, "out.jsonl")
        config = self.write_config(self.pipeline() + textwrap.dedent("""
            [source.rows]
            plugin = csv
            path = %s

            [detector.forest]
            plugin = iforest
            input = rows
            window = 4
            train_samples = 500
            retrain_every = 300
            learn_anomalies = true
            background = false
            calibrate = none

            [sink.out]
            plugin = jsonl
            input = forest
            path = %s
            """) % (self.csv, self.out))
        runs = []
        for _ in range(2):
            self.clear_state()
            if os.path.exists(self.out):
                os.unlink(self.out)
            r = self.cli("run", config, timeout=120)
            self.assertExit(r, ewtest.EXIT_OK)
            self.assertIn("model ready", r.stderr)
            self.assertIn("model retrained", r.stderr)
            runs.append(self.lines())
        first, second = runs
        self.assertEqual(len(first), ROWS)
        self.assertEqual([l["score"] for l in first], [l["score"] for l in second])
        # 3 incomplete windows, then 500 training rows; scored from the next row on.
        self.assertTrue(all(not l["score"] for l in first[:503]))
        self.assertTrue(all(l["score"] > 0 for l in first[503:]))
        # Each planted outlier is in 4 windows; they stand out from the rest.
        spoilt = {i + k for i in range(199, ROWS, 200) for k in range(4)}
        outliers = [first[i]["score"] for i in range(599, ROWS, 200)]
        normal = sorted(l["score"] for i, l in enumerate(first) if i >= 503 and i not in spoilt)
        self.assertGreater(min(outliers), normal[int(len(normal) * 0.99)])

    def test_replay_with_background_training_gives_the_same_bytes(self):
        # The defaults (background = true, retraining every 100 samples, each
        # retrained forest put in use apply_delay samples after its start):
        # which forest scores a sample depends on the data only, so two replays
        # at full speed write byte-identical output, every row scored.
        self.csv = os.path.join(self.tmp, "in.csv")
        write_csv(self.csv, rows=6000, seed=8)
        self.out = os.path.join(self.tmp, "out.jsonl")
        config = self.write_config(self.pipeline() + textwrap.dedent("""
            [source.rows]
            plugin = csv
            path = %s

            [detector.forest]
            plugin = iforest
            input = rows
            trees = 200

            [sink.out]
            plugin = jsonl
            input = forest
            path = %s
            """) % (self.csv, self.out))
        runs = []
        for _ in range(2):
            self.clear_state()
            if os.path.exists(self.out):
                os.unlink(self.out)
            r = self.cli("run", config, timeout=300)
            self.assertExit(r, ewtest.EXIT_OK)
            self.assertIn("model retrained", r.stderr)
            with open(self.out, "rb") as f:
                runs.append(f.read())
        self.assertEqual(runs[0], runs[1], "two replays of the same file differ")
        lines = [json.loads(l) for l in runs[0].splitlines()]
        self.assertEqual(len(lines), 6000)
        # 500 rows learnt (train_samples' default, empty scores), then every row
        # scored by a forest (its path length; the score is the host's, which
        # warms up first).
        self.assertTrue(all(l["score"] is None for l in lines[:500]))
        self.assertTrue(all(l["values"]["path_length"] is not None for l in lines[500:]))
        self.assertTrue(any(l["score"] is not None for l in lines[500:]))

    def lines(self):
        # A SIGKILL may cut the last line: only complete ones count.
        return ewtest.whole_json_lines(self.out)


if __name__ == "__main__":
    ewtest.main()
