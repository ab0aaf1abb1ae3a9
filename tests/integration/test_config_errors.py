"""Config validation through the binary: every class of config error makes
`edgewatch check` (and `run`) exit 2 with one stderr line naming FILE:LINE:,
the section in brackets and the key, before anything starts; a valid config
checks clean; an unreachable node is only a warning."""

import os
import re

import ewtest

SOURCE = """\
[source.gen]
plugin = synth
count = 100
rate = 0
"""

DETECTOR = """\
[detector.z]
plugin = zscore
input = gen
window = 10
"""

# The sink's path is filled in per test (the test's temporary folder).
SINK = """\
[sink.out]
plugin = jsonl
input = z
path = {out}
only = all
"""


class ConfigErrorTest(ewtest.EdgewatchTest):

    def setUp(self):
        super().setUp()
        self.out = os.path.join(self.tmp, "out.jsonl")

    def config(self, source=SOURCE, detector=DETECTOR, sink=SINK, extra="", pipeline=None):
        """Writes the baseline pipeline (synth -> zscore -> jsonl) with sections replaced."""
        parts = [pipeline if pipeline is not None else self.pipeline(),
                 source, detector, sink.replace("{out}", self.out), extra]
        return self.write_config("\n".join(p for p in parts if p))

    def assertConfigError(self, path, line_text, section=None, key=None, nth=1,
                          contains=(), command="check", env=None):
        """`edgewatch COMMAND path` exits 2 and one stderr line holds path:LINE: (LINE
        of the nth line reading line_text) with [section], key and `contains`."""
        line = self.line_of(path, line_text, nth)
        result = self.cli(command, path, env=env)
        self.assertExit(result, ewtest.EXIT_USAGE)
        where = "%s:%d:" % (path, line)
        matching = [ln for ln in result.stderr.splitlines() if where in ln]
        self.assertTrue(matching, "no stderr line with %r\nstderr:\n%s" % (where, result.stderr))
        message = matching[0]
        if section is not None:
            self.assertIn("[%s]" % section, message)
        if key is not None:
            self.assertRegex(message, r"\b%s\b" % re.escape(key))
        for text in contains:
            self.assertIn(text, message)
        self.assertFalse(os.path.exists(self.out), "the sink was started: %s exists" % self.out)
        return message

    # --- valid configs -------------------------------------------------------------

    def test_valid_config_checks_clean(self):
        result = self.cli("check", self.config())
        self.assertExit(result, ewtest.EXIT_OK)
        self.assertFalse(os.path.exists(self.out), "check must not start the pipeline")

    def test_environment_expansion(self):
        detector = DETECTOR.replace("window = 10", "window = ${EW_E2E_WINDOW}")
        sink = SINK.replace("path = {out}", "path = ${EW_E2E_UNSET_DIR:-%s}/out.jsonl" % self.tmp)
        path = self.config(detector=detector, sink=sink)
        result = self.cli("check", path, env=self.env(EW_E2E_WINDOW="20", EW_E2E_UNSET_DIR=None))
        self.assertExit(result, ewtest.EXIT_OK)

    def test_node_reaching_no_sink_is_a_warning(self):
        orphan = "[detector.orphan]\nplugin = zscore\ninput = gen\n"
        result = self.cli("check", self.config(extra=orphan))
        self.assertExit(result, ewtest.EXIT_OK)
        self.assertIn("orphan", result.stderr)

    # --- errors in options -----------------------------------------------------------

    def test_unknown_key(self):
        path = self.config(detector=DETECTOR + "bogus = 1\n")
        self.assertConfigError(path, "bogus = 1", "detector.z", "bogus")

    def test_unknown_pipeline_key(self):
        path = self.config(pipeline=self.pipeline(bogus="1"))
        self.assertConfigError(path, "bogus = 1", "pipeline", "bogus")

    def test_wrong_type(self):
        path = self.config(detector=DETECTOR.replace("window = 10", "window = abc"))
        self.assertConfigError(path, "window = abc", "detector.z", "window", contains=["abc"])

    def test_out_of_range(self):
        path = self.config(detector=DETECTOR.replace("window = 10", "window = 1"))
        self.assertConfigError(path, "window = 1", "detector.z", "window")

    def test_missing_required_option(self):
        path = self.config(source="[source.gen]\nplugin = csv\n")
        # A missing key is reported at its section's header.
        self.assertConfigError(path, "[source.gen]", "source.gen", "path")

    def test_bad_pipeline_value(self):
        path = self.config(pipeline=self.pipeline(log_level="loud"))
        self.assertConfigError(path, "log_level = loud", "pipeline", "log_level")

    def test_bad_on_full(self):
        path = self.config(detector=DETECTOR + "on_full = maybe\n")
        self.assertConfigError(path, "on_full = maybe", "detector.z", "on_full")

    def test_bad_only(self):
        path = self.config(sink=SINK.replace("only = all", "only = some"))
        self.assertConfigError(path, "only = some", "sink.out", "only")

    # --- errors in plugins and the graph --------------------------------------------

    def test_unknown_plugin(self):
        path = self.config(source=SOURCE.replace("plugin = synth", "plugin = nosuch"))
        self.assertConfigError(path, "plugin = nosuch", "source.gen", "plugin", contains=["nosuch"])

    def test_plugin_name_with_a_path(self):
        for value in ("../x", "/tmp/source_synth.so", "synth/source_synth"):
            with self.subTest(plugin=value):
                path = self.config(source=SOURCE.replace("plugin = synth", "plugin = " + value))
                self.assertConfigError(path, "plugin = " + value, "source.gen", "plugin")

    def test_kind_mismatch(self):
        path = self.config(sink="[sink.out]\nplugin = synth\ninput = z\n")
        self.assertConfigError(path, "plugin = synth", "sink.out", "plugin", nth=2)

    def test_unknown_input(self):
        path = self.config(detector=DETECTOR.replace("input = gen", "input = nope"))
        self.assertConfigError(path, "input = nope", "detector.z", "input", contains=["nope"])

    def test_cycle(self):
        detectors = ("[detector.a]\nplugin = zscore\ninput = b\n\n"
                     "[detector.b]\nplugin = zscore\ninput = a\n")
        path = self.config(detector=detectors, sink=SINK.replace("input = z", "input = b"))
        line_a = self.line_of(path, "input = b")  # in [detector.a]
        line_b = self.line_of(path, "input = a")  # in [detector.b]
        result = self.cli("check", path)
        self.assertExit(result, ewtest.EXIT_USAGE)
        pattern = re.compile(r"%s:(%d|%d):.*\[detector\.(a|b)\].*\binput\b" % (
            re.escape(path), line_a, line_b))
        self.assertTrue(any(pattern.search(ln) for ln in result.stderr.splitlines()),
                        "no cycle error at %s:%d or :%d\nstderr:\n%s" % (
                            path, line_a, line_b, result.stderr))

    def test_source_with_input(self):
        extra = ("[source.g2]\nplugin = synth\ninput = gen\n\n"
                 "[sink.n2]\nplugin = null\ninput = g2\n")
        path = self.config(extra=extra)
        self.assertConfigError(path, "input = gen", "source.g2", "input", nth=2)

    def test_sink_without_input(self):
        path = self.config(sink=SINK.replace("input = z\n", ""))
        self.assertConfigError(path, "[sink.out]", "sink.out", "input")

    # --- errors in the file itself ----------------------------------------------------

    def test_unset_variable(self):
        sink = SINK.replace("path = {out}", "path = ${EW_E2E_UNSET}/out.jsonl")
        path = self.config(sink=sink)
        self.assertConfigError(path, "path = ${EW_E2E_UNSET}/out.jsonl", "sink.out", "path",
                               contains=["EW_E2E_UNSET"], env=self.env(EW_E2E_UNSET=None))

    def test_default_value_is_validated(self):
        detector = DETECTOR.replace("window = 10", "window = ${EW_E2E_UNSET:-abc}")
        path = self.config(detector=detector)
        self.assertConfigError(path, "window = ${EW_E2E_UNSET:-abc}", "detector.z", "window",
                               env=self.env(EW_E2E_UNSET=None))

    def test_malformed_line(self):
        path = self.config(detector=DETECTOR + "this line has no equals sign\n")
        self.assertConfigError(path, "this line has no equals sign")

    def test_unknown_section_kind(self):
        path = self.config(extra="[filter.x]\nplugin = zscore\ninput = gen\n")
        self.assertConfigError(path, "[filter.x]", "filter.x")

    def test_duplicate_section(self):
        path = self.config(extra=DETECTOR)
        self.assertConfigError(path, "[detector.z]", "detector.z", nth=2)

    # --- how errors are reported ------------------------------------------------------

    def test_path_is_reported_as_given(self):
        path = self.config(detector=DETECTOR.replace("window = 10", "window = abc"))
        line = self.line_of(path, "window = abc")
        result = self.cli("check", os.path.basename(path), cwd=self.tmp)
        self.assertExit(result, ewtest.EXIT_USAGE)
        self.assertRegex(result.stderr, r"(^|[\s:])%s:%d:" % (
            re.escape(os.path.basename(path)), line))
        self.assertNotIn("%s:%d:" % (path, line), result.stderr)

    def test_run_starts_nothing_on_a_config_error(self):
        path = self.config(detector=DETECTOR.replace("window = 10", "window = abc"))
        self.assertConfigError(path, "window = abc", "detector.z", "window", command="run")

    def test_missing_config_file(self):
        result = self.cli("check", os.path.join(self.tmp, "nosuch.ini"))
        self.assertExit(result, ewtest.EXIT_USAGE)
        self.assertIn("nosuch.ini", result.stderr)


if __name__ == "__main__":
    ewtest.main()
