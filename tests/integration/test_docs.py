"""The documentation generated from the option tables stays true: the
configuration reference (docs/configuration.md) is exactly what
tools/gen-config-docs writes, and every plugin's README holds its option table
row for row as `edgewatch describe --markdown` prints it."""

import os
import subprocess

import ewtest


def table_rows(markdown):
    """The option rows of a describe table ("| `name` | ..."), with \\| unescaped
    (the README may escape pipes inside cells)."""
    return [line.replace("\\|", "|") for line in markdown.splitlines() if line.startswith("| `")]


class DocsTest(ewtest.EdgewatchTest):

    def test_configuration_reference_is_current(self):
        build = os.path.dirname(os.path.dirname(ewtest.BIN))
        generated = subprocess.run(
            [os.path.join(ewtest.SOURCE_DIR, "tools", "gen-config-docs"), build, "-"],
            capture_output=True, text=True, timeout=120, env=self.env())
        self.assertEqual(generated.returncode, 0, generated.stderr)
        with open(os.path.join(ewtest.SOURCE_DIR, "docs", "configuration.md"), encoding="utf-8") as f:
            committed = f.read()
        self.assertEqual(committed, generated.stdout,
                         "docs/configuration.md is out of date: run tools/gen-config-docs")

    def test_every_plugin_readme_has_its_option_table(self):
        listing = self.cli("plugins")
        self.assertExit(listing, ewtest.EXIT_OK)
        plugins = [line.split()[:2] for line in listing.stdout.splitlines()[1:] if line.strip()]
        self.assertGreaterEqual(len(plugins), 5, listing.stdout)
        for kind, name in plugins:
            with self.subTest(plugin="%s.%s" % (kind, name)):
                described = self.cli("describe", "--markdown", "%s.%s" % (kind, name))
                self.assertExit(described, ewtest.EXIT_OK)
                rows = table_rows(described.stdout)
                readme_path = os.path.join(ewtest.SOURCE_DIR, "plugins", name, "README.md")
                self.assertTrue(os.path.exists(readme_path), "plugins/%s has no README.md" % name)
                with open(readme_path, encoding="utf-8") as f:
                    readme = f.read().replace("\\|", "|")
                for row in rows:
                    self.assertIn(row, readme, "%s lacks the option row:\n%s" % (readme_path, row))


if __name__ == "__main__":
    ewtest.main()
