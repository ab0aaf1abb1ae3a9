"""The command line: --version, --help, usage errors, `plugins` and `describe`."""

import re

import ewtest

PLUGINS = {
    "synth": "source",
    "csv": "source",
    "zscore": "detector",
    "jsonl": "sink",
    "null": "sink",
}

# zscore's options and their defaults as `describe zscore` must show them.
ZSCORE_DEFAULTS = {
    "window": "1500",
    "threshold": "3",
    "warmup": "-1",
    "robust": "false",
}


class CliTest(ewtest.EdgewatchTest):

    def test_version(self):
        result = self.cli("--version")
        self.assertExit(result, ewtest.EXIT_OK)
        self.assertIn(ewtest.project_version(), result.stdout)

    def test_help(self):
        result = self.cli("--help")
        self.assertExit(result, ewtest.EXIT_OK)
        for command in ("run", "check", "plugins", "describe", "health"):
            self.assertRegex(result.stdout, r"\b%s\b" % command)

    def test_unknown_command(self):
        result = self.cli("frobnicate")
        self.assertExit(result, ewtest.EXIT_USAGE)
        self.assertRegex(result.stderr, r"(?i)usage")
        self.assertIn("frobnicate", result.stderr)

    def test_unknown_option(self):
        result = self.cli("--frobnicate")
        self.assertExit(result, ewtest.EXIT_USAGE)
        self.assertRegex(result.stderr, r"(?i)usage")

    def test_run_without_file(self):
        result = self.cli("run")
        self.assertExit(result, ewtest.EXIT_USAGE)
        self.assertRegex(result.stderr, r"(?i)usage")

    def test_plugins_lists_kind_and_version(self):
        result = self.cli("plugins")
        self.assertExit(result, ewtest.EXIT_OK)
        lines = result.stdout.splitlines()
        for name, kind in PLUGINS.items():
            with self.subTest(plugin=name):
                found = [ln for ln in lines if re.search(r"\b%s\b" % name, ln)
                         and re.search(r"\b%s\b" % kind, ln)]
                self.assertTrue(found, "no line with %s and %s in:\n%s" % (
                    name, kind, result.stdout))
                self.assertRegex(found[0], r"\d+\.\d+(\.\d+)?")

    def test_describe_zscore(self):
        result = self.cli("describe", "zscore")
        self.assertExit(result, ewtest.EXIT_OK)
        lines = result.stdout.splitlines()
        for option, default in ZSCORE_DEFAULTS.items():
            with self.subTest(option=option):
                found = [ln for ln in lines if re.search(r"\b%s\b" % option, ln)]
                self.assertTrue(found, "%s not described:\n%s" % (option, result.stdout))
                if default is not None:
                    self.assertTrue(
                        any(re.search(r"(?<![\w.])%s(?![\w.])" % re.escape(default), ln)
                            for ln in found),
                        "default %s of %s not shown:\n%s" % (default, option, result.stdout))

    def test_describe_kind_and_name(self):
        result = self.cli("describe", "detector.zscore")
        self.assertExit(result, ewtest.EXIT_OK)
        self.assertIn("window", result.stdout)

    def test_describe_unknown_plugin(self):
        result = self.cli("describe", "nosuch")
        self.assertExit(result, ewtest.EXIT_USAGE)
        self.assertIn("nosuch", result.stderr)


if __name__ == "__main__":
    ewtest.main()
