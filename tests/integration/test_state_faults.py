"""Faults of the state folder, end to end: SIGKILL at random moments while a
detector trains and saves never leaves a half-written state file (every file
present loads, no temporary survives the next start); a read-only state folder
is a clear start-up error for a node that needs it; a full one makes the save
fail with a clear log line while scoring goes on; SIGTERM during a short
training saves the model, during a long one abandons it within shutdown_timeout,
and both exit 0."""

import glob
import os
import random
import struct
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
        for i in range(40):
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
        ro = self.mount_tmpfs("ro", "ro,size=1m")
        result = self.cli("run", self.forest_config(ro, self.write_csv(100)))
        self.assertExit(result, ewtest.EXIT_RUNTIME)
        self.assertIn("state folder unusable", result.stderr)
        self.assertRegex(result.stderr, r"[Rr]ead-only")

    def test_full_state_folder_fails_the_save_clearly_and_keeps_scoring(self):
        small = self.mount_tmpfs("small", "size=12k")  # the folders fit, a 50-tree model not
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

    def training_config(self, csv, epochs, shutdown_timeout):
        return self.write_config(self.pipeline(shutdown_timeout=shutdown_timeout) + """
[source.data]
plugin = csv
path = %s
timestamp_column =
rate = 2000

[detector.ae]
plugin = autoencoder
input = data
window = 1
layers = 1
train_samples = 1500
epochs = %d
patience = %d

[sink.out]
plugin = null
input = ae
""" % (csv, epochs, epochs))

    def sigterm_once_training(self, proc):
        """SIGTERM as soon as the detector's training starts; returns the exit code."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "[ae] training on 1500 windows" not in proc.stderr():
            time.sleep(0.01)
        self.assertIn("[ae] training on 1500 windows", proc.stderr())
        return self.stop(proc, timeout=30)

    def test_sigterm_during_a_short_training_waits_and_saves(self):
        """300 epochs (about 0.1 s): the stop waits for the model and saves it whole."""
        csv = self.write_csv(5000)
        proc = self.start("run", self.training_config(csv, 300, "20s"))
        self.assertEqual(self.sigterm_once_training(proc), ewtest.EXIT_OK, proc.output())
        model = os.path.join(self.state_dir, "ae", "model.bin")
        self.assertTrue(os.path.exists(model), proc.output())
        self.assertTrue(state_file_ok(model))
        self.assertIn("model saved to model.bin", proc.stderr())

    def test_sigterm_during_a_long_training_abandons_it_within_shutdown_timeout(self):
        """100,000 epochs (minutes) against shutdown_timeout = 5s: the stop gives
        the training a second, abandons it and exits 0 in time (a forced stop
        would exit 1); nothing is saved, and the next start learns again."""
        csv = self.write_csv(5000)
        path = self.training_config(csv, 100000, "5s")
        proc = self.start("run", path)
        self.assertEqual(self.sigterm_once_training(proc), ewtest.EXIT_OK, proc.output())
        err = proc.stderr()
        self.assertIn("[ae] stopping while the model is being learnt: training abandoned after "
                      "waiting 1 s for it; nothing saved, the model is learnt again at the next "
                      "start", err)
        self.assertNotIn("forcing the stop", err)
        self.assertEqual(os.listdir(os.path.join(self.state_dir, "ae")), [])
        again = self.start("run", path)
        self.assertEqual(self.sigterm_once_training(again), ewtest.EXIT_OK, again.output())
        self.assertNotIn("loaded", again.stderr())
        self.assertIn("training abandoned", again.stderr())

    def endless_config(self, jsonl):
        return self.write_config(self.pipeline() + """
[source.gen]
plugin = synth
rate = 200
count = 0

[detector.z]
plugin = zscore
input = gen

[sink.out]
plugin = jsonl
input = z
path = %s
""" % jsonl)

    def test_a_second_instance_on_the_same_state_folder_is_refused(self):
        """Issue 14 item 1: two processes on one state_dir. The second exits 2 naming
        the first's pid and writes nothing; the first runs on, stops cleanly, and a
        later start takes the folder again."""
        first_out = os.path.join(self.tmp, "first.jsonl")
        first = self.start("run", self.endless_config(first_out))
        self.wait_for(lambda: "running: 3 nodes" in first.stderr(), first, "the first instance to run")
        second_out = os.path.join(self.tmp, "second.jsonl")
        second = self.cli("run", self.endless_config(second_out), timeout=10)
        self.assertExit(second, ewtest.EXIT_USAGE)
        self.assertIn("state folder %s is in use by another edgewatch (pid %d" % (self.state_dir, first.pid),
                      second.stderr)
        self.assertNotIn("running: 3 nodes", second.stderr)
        self.assertFalse(os.path.exists(second_out), "the refused instance wrote output")
        self.assertTrue(first.running(), first.output())
        self.assertEqual(self.stop(first), ewtest.EXIT_OK, first.output())
        again = self.start("run", self.endless_config(second_out))
        self.wait_for(lambda: "running: 3 nodes" in again.stderr(), again, "a start after the first stopped")
        self.assertEqual(self.stop(again), ewtest.EXIT_OK, again.output())
        self.assertNotIn("did not stop cleanly", again.stderr())

    def test_the_lock_of_a_killed_instance_is_released(self):
        """kill -9 (as an OOM kill) frees the folder at once: the next start runs,
        and says that the previous run did not stop cleanly, naming its pid (item 16)."""
        out = os.path.join(self.tmp, "out.jsonl")
        path = self.endless_config(out)
        victim = self.start("run", path)
        self.wait_for(lambda: "running: 3 nodes" in victim.stderr(), victim, "the first instance to run")
        victim.kill()
        after = self.start("run", path)
        self.wait_for(lambda: "running: 3 nodes" in after.stderr(), after, "the start after kill -9")
        self.assertRegex(after.stderr(), r"WARN +the previous run on state folder .* did not stop cleanly "
                         r"\(pid %d started " % victim.pid)
        self.assertEqual(self.stop(after), ewtest.EXIT_OK, after.output())
        # That stop was clean: the next start says nothing.
        clean = self.cli("run", self.write_config(self.pipeline() + """
[source.gen]
plugin = synth
rate = 0
count = 10

[sink.out]
plugin = null
input = gen
""", name="short.ini"))
        self.assertExit(clean, ewtest.EXIT_OK)
        self.assertNotIn("did not stop cleanly", clean.stderr)


if __name__ == "__main__":
    ewtest.main()
