"""The loader's gates, through the binary: plugins built against another ABI
(tests/fixtures/abi) are refused with exit 2 naming the file and both versions;
one built against the host's ABI loads and runs; a world-writable plugin file
or folder is refused."""

import os
import shutil

import ewtest


class AbiTest(ewtest.EdgewatchTest):

    def setUp(self):
        super().setUp()
        self.host_abi = "%d.%d" % ewtest.abi_version()
        self.out = os.path.join(self.tmp, "out.jsonl")

    def fixture_config(self, plugin, count=5):
        """Fixture source -> jsonl sink, with the fixture folder first in plugin_path."""
        return self.write_config(
            self.pipeline(plugin_path="%s:%s" % (ewtest.FIXTURE_PLUGINS, ewtest.PLUGIN_PATH)) + """
[source.gen]
plugin = %s
count = %d

[sink.out]
plugin = jsonl
input = gen
path = %s
only = all
""" % (plugin, count, self.out))

    def assertRefused(self, command, plugin, plugin_abi):
        path = self.fixture_config(plugin)
        result = self.cli(command, path)
        self.assertExit(result, ewtest.EXIT_USAGE)
        self.assertIn("source_%s.so" % plugin, result.stderr)
        self.assertIn(plugin_abi, result.stderr)
        self.assertIn(self.host_abi, result.stderr)
        self.assertFalse(os.path.exists(self.out), "a refused pipeline was started")

    def test_fixtures_are_built(self):
        for name in ("abi_same", "abi_older", "abi_newer", "abi_major"):
            self.assertTrue(
                os.path.isfile(os.path.join(ewtest.FIXTURE_PLUGINS, "source_%s.so" % name)),
                "fixture %s not built in %s" % (name, ewtest.FIXTURE_PLUGINS))

    def test_newer_major_is_refused(self):
        major, minor = ewtest.abi_version()
        for command in ("check", "run"):
            with self.subTest(command=command):
                self.assertRefused(command, "abi_major", "%d.%d" % (major + 1, minor))

    def test_newer_minor_is_refused(self):
        major, minor = ewtest.abi_version()
        for command in ("check", "run"):
            with self.subTest(command=command):
                self.assertRefused(command, "abi_newer", "%d.%d" % (major, minor + 1))

    def test_same_abi_loads_and_runs(self):
        path = self.fixture_config("abi_same", count=5)
        self.assertExit(self.cli("check", path), ewtest.EXIT_OK)
        self.assertExit(self.cli("run", path), ewtest.EXIT_OK)
        records = ewtest.json_lines(self.out)
        self.assertEqual(len(records), 5)

    def test_older_minor_loads_and_runs(self):
        major, minor = ewtest.abi_version()
        self.assertGreater(minor, 0, "no older minor exists for ABI %d.0" % major)
        path = self.fixture_config("abi_older", count=7)
        self.assertExit(self.cli("check", path), ewtest.EXIT_OK)
        self.assertExit(self.cli("run", path), ewtest.EXIT_OK)
        self.assertEqual(len(ewtest.json_lines(self.out)), 7)

    def v1_1_detector_config(self, extra=""):
        """Fixture source (0, 1, 2, ...) -> the ABI 1.1 detector -> jsonl, and a
        second jsonl sink that takes the detector's events."""
        self.events = os.path.join(self.tmp, "events.jsonl")
        return self.write_config(
            self.pipeline(plugin_path="%s:%s" % (ewtest.FIXTURE_PLUGINS, ewtest.PLUGIN_PATH)) + """
[source.gen]
plugin = abi_same
count = 20

[detector.old]
plugin = abi_v1_1
input = gen
threshold = 9.5
%s
[sink.out]
plugin = jsonl
input = old
path = %s

[sink.ev]
plugin = jsonl
input = old
path = %s
only = events
""" % (extra, self.out, self.events))

    def test_detector_built_against_abi_1_1_loads_and_runs(self):
        path = self.v1_1_detector_config("calibrate = none\n")
        self.assertExit(self.cli("check", path), ewtest.EXIT_OK)
        self.assertExit(self.cli("run", path), ewtest.EXIT_OK)
        records = ewtest.json_lines(self.out)
        self.assertEqual(len(records), 20)
        for i, r in enumerate(records):
            # Its own score and flag, as it wrote them (it knows nothing of 1.2).
            self.assertAlmostEqual(r["score"], i / (i + 9.5), places=12)
            self.assertEqual(r["anomaly"], 1 if i > 9.5 else 0)
            self.assertEqual(r["values"]["magnitude"], float(i))

    def test_detector_built_against_abi_1_1_is_calibrated_by_the_host(self):
        path = self.v1_1_detector_config("calibrate = likelihood\ncalibrate_warmup = 5\n")
        self.assertExit(self.cli("run", path), ewtest.EXIT_OK)
        records = ewtest.json_lines(self.out)
        self.assertEqual(len(records), 20)
        # The host calibrates its score: none while the history warms up, then
        # values in [0, 1] that are not the plugin's own.
        self.assertIsNone(records[0]["score"])
        scored = [r["score"] for r in records if r["score"] is not None]
        self.assertGreater(len(scored), 5)
        self.assertTrue(all(0 <= s <= 1 for s in scored))
        self.assertNotAlmostEqual(records[19]["score"], 19 / (19 + 9.5), places=6)

    # --- world-writable plugins ----------------------------------------------------

    def writable_config(self, plugin_dir):
        """synth -> null with only plugin_dir searched (EDGEWATCH_PLUGIN_PATH is
        removed from the environment when the config runs)."""
        return self.write_config(self.pipeline(plugin_path=plugin_dir) + """
[source.gen]
plugin = synth
count = 10
rate = 0

[sink.out]
plugin = null
input = gen
""")

    def copy_plugins(self, folder):
        """Copies synth and null into folder (mode 0755, files 0755); returns synth's copy."""
        os.makedirs(folder)
        os.chmod(folder, 0o755)
        copies = {}
        for kind, name in (("source", "synth"), ("sink", "null")):
            file_name = "%s_%s.so" % (kind, name)
            src = os.path.join(ewtest.PLUGIN_PATH, name, file_name)
            if not os.path.exists(src):
                src = os.path.join(ewtest.PLUGIN_PATH, file_name)
            copies[name] = os.path.join(folder, file_name)
            shutil.copy(src, copies[name])
            os.chmod(copies[name], 0o755)
        return copies["synth"]

    def assertWritableRefused(self, plugin_dir):
        path = self.writable_config(plugin_dir)
        for command in ("check", "run"):
            with self.subTest(command=command):
                result = self.cli(command, path, env=self.env(plugin_path=False))
                self.assertExit(result, ewtest.EXIT_USAGE)
                self.assertIn("writable", result.stderr)

    def test_copied_plugin_loads(self):
        # The control for the two tests below: the same copy, safely owned, is fine.
        folder = os.path.join(self.tmp, "plugins")
        self.copy_plugins(folder)
        result = self.cli("check", self.writable_config(folder), env=self.env(plugin_path=False))
        self.assertExit(result, ewtest.EXIT_OK)

    def test_world_writable_file_is_refused(self):
        folder = os.path.join(self.tmp, "plugins")
        os.chmod(self.copy_plugins(folder), 0o666)
        self.assertWritableRefused(folder)

    def test_world_writable_folder_is_refused(self):
        folder = os.path.join(self.tmp, "plugins")
        self.copy_plugins(folder)
        os.chmod(folder, 0o777)
        self.assertWritableRefused(folder)


    def test_symlink_into_a_world_writable_folder_is_refused(self):
        # Issue 14 item 7: the plugin folder is a link to a folder inside a
        # world-writable one; the loader checks where the link leads.
        public = os.path.join(self.tmp, "public")
        os.makedirs(public)
        self.copy_plugins(os.path.join(public, "plugins"))
        os.chmod(public, 0o777)
        link = os.path.join(self.tmp, "plugins")
        os.symlink(os.path.join(public, "plugins"), link)
        self.assertWritableRefused(link)
        result = self.cli("check", self.writable_config(link), env=self.env(plugin_path=False))
        self.assertIn("refusing plugin folder %s (holding %s/" % (public, link), result.stderr)
        self.assertIn("chmod go-w %s" % public, result.stderr)

    def test_writable_parent_folder_is_refused(self):
        # Issue 14 item 7: a writable folder above the plugin's own lets others
        # rename the plugin folder away and put theirs in its place.
        parent = os.path.join(self.tmp, "shared")
        os.makedirs(parent)
        folder = os.path.join(parent, "plugins")
        self.copy_plugins(folder)
        os.chmod(parent, 0o775)
        self.assertWritableRefused(folder)
        result = self.cli("check", self.writable_config(folder), env=self.env(plugin_path=False))
        self.assertIn("refusing plugin folder %s (holding %s/" % (parent, folder), result.stderr)
        self.assertIn("writable by its group (mode 0775)", result.stderr)


if __name__ == "__main__":
    ewtest.main()
