"""Faults of the state folder, end to end: SIGKILL at random moments while a
detector trains and saves never leaves a half-written state file (every file
present loads, no temporary survives the next start); a read-only state folder
is a clear start-up error for a node that needs it; a full one makes the save
fail with a clear log line while scoring goes on; SIGTERM during training saves
the model and exits 0."""

import glob
import os
import random
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import zlib

import ewtest


def state_file_ok(path):
    """Whether a state file is whole: the checks of core/state.c (magic, header CRC,
    length, payload CRC), redone independently here."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 64 or data[:8] != b"EWSTATE\0":
        return False
    version, header_size, length, payload_crc, header_crc = struct.unpack_from("<IIQII", data, 8)
    if zlib.crc32(data[:28]) != header_crc or version != 1 or header_size != 64:
        return False
    return length == len(data) - 64 and zlib.crc32(data[64:]) == payload_crc


class StateFaultTest(ewtest.EdgewatchTest):

    def write_csv(self, rows=20000):
        path = os.path.join(self.tmp, "in.csv")
        rnd = random.Random(7)
        with open(path, "w", encoding="utf-8") as f:
            f.write("timestamp,a,b\n")
            for i in range(rows):
                f.write("%d,%.4f,%.4f\n" % (1700000000 + i, rnd.gauss(0, 1), rnd.gauss(5, 2)))
        return path

    def forest_config(self, state_dir, csv, rate=4000, **pipeline):
        return self.write_config(self.pipeline(state_dir=state_dir, **pipeline) + """
[source.data]
plugin = csv
path = %s
timestamp_column =
rate = %d

[detector.forest]
plugin = iforest
input = data
train_samples = 300
sample_size = 128
trees = 50
retrain_every = 400

[sink.out]
plugin = null
input = forest
""" % (csv, rate))

    def test_sigkill_at_random_moments_never_leaves_a_torn_state_file(self):
        csv = self.write_csv()
        path = self.forest_config(self.state_dir, csv)
        rnd = random.Random(1234)
        node_dir = os.path.join(self.state_dir, "forest")
        saved_seen = 0
        for i in range(12):
            proc = self.start("run", path)
            time.sleep(rnd.uniform(0.05, 0.6))
            proc.kill()
            for f in glob.glob(os.path.join(node_dir, "*")):
                name = os.path.basename(f)
                if name == "forest.bin":
                    saved_seen += 1
                    self.assertTrue(state_file_ok(f), "iteration %d: torn %s" % (i, f))
                else:
                    # Only crash leftovers of an interrupted save may be here.
                    self.assertRegex(name, r"^\.forest\.bin\.tmp-", "iteration %d: stray %s" % (i, f))
        self.assertGreater(saved_seen, 0, "the model was never saved: the test killed too early")
        # A normal start removes leftovers and uses the model.
        proc = self.start("run", path)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "scoring from the first sample" not in proc.stderr():
            time.sleep(0.1)
        self.assertEqual(self.stop(proc), ewtest.EXIT_OK, proc.output())
        self.assertIn("scoring from the first sample", proc.stderr())
        self.assertEqual([os.path.basename(p) for p in glob.glob(os.path.join(node_dir, ".*tmp-*"))], [])

    def test_unwritable_state_folder_is_a_clear_start_error(self):
        # A path below a regular file can never be created, even by root.
        blocker = os.path.join(self.tmp, "not-a-folder")
        with open(blocker, "w", encoding="utf-8") as f:
            f.write("x")
        path = self.forest_config(os.path.join(blocker, "state"), self.write_csv(100))
        result = self.cli("run", path)
        self.assertExit(result, ewtest.EXIT_RUNTIME)
        self.assertIn("state folder unusable", result.stderr)
        self.assertIn(blocker, result.stderr)
        self.assertRegex(result.stderr, r"\[forest\]")

    def test_read_only_state_folder(self):
        ro = os.path.join(self.tmp, "ro")
        os.mkdir(ro)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro],
                          capture_output=True).returncode != 0:
            self.skipTest("cannot mount a read-only tmpfs here (needs root)")
        self.addCleanup(subprocess.run, ["umount", ro], capture_output=True)
        result = self.cli("run", self.forest_config(ro, self.write_csv(100)))
        self.assertExit(result, ewtest.EXIT_RUNTIME)
        self.assertIn("state folder unusable", result.stderr)
        self.assertRegex(result.stderr, r"[Rr]ead-only")

    def test_full_state_folder_fails_the_save_clearly_and_keeps_scoring(self):
        small = os.path.join(self.tmp, "small")
        os.mkdir(small)
        # Room for the folders but not for a 50-tree model.
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", small],
                          capture_output=True).returncode != 0:
            self.skipTest("cannot mount a small tmpfs here (needs root)")
        self.addCleanup(subprocess.run, ["umount", small], capture_output=True)
        csv = self.write_csv(3000)
        path = self.forest_config(small, csv, rate=0)
        result = self.cli("run", path, timeout=60)
        self.assertExit(result, ewtest.EXIT_OK)
        self.assertRegex(result.stderr, r"saving state file forest\.bin failed: .*(space|No space)")
        self.assertRegex(result.stderr, r"\[out\] finished \(ended\): samples_in=3000 ")
        node_dir = os.path.join(small, "forest")
        for f in os.listdir(node_dir):
            self.assertFalse(f.startswith(".forest.bin.tmp-"), "temporary left behind: %s" % f)
            if f == "forest.bin":
                self.assertTrue(state_file_ok(os.path.join(node_dir, f)))

    def test_sigterm_during_training_saves_and_exits_0(self):
        csv = self.write_csv(5000)
        path = self.write_config(self.pipeline(shutdown_timeout="20s") + """
[source.data]
plugin = csv
path = %s
timestamp_column =
rate = 2000

[detector.ae]
plugin = autoencoder
input = data
train_samples = 1500
epochs = 400
patience = 400

[sink.out]
plugin = null
input = ae
""" % csv)
        proc = self.start("run", path)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "learning the model" not in proc.stderr():
            time.sleep(0.05)
        # The training set fills after 0.75 s at 2000 rows/s; stop while it trains.
        time.sleep(1.2)
        self.assertEqual(self.stop(proc, timeout=30), ewtest.EXIT_OK, proc.output())
        model = os.path.join(self.state_dir, "ae", "model.bin")
        self.assertTrue(os.path.exists(model), proc.output())
        self.assertTrue(state_file_ok(model))


if __name__ == "__main__":
    ewtest.main()
