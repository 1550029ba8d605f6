"""The README opens with exactly two set-up commands, and .ci/run runs the second one."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_commands():
  text = (ROOT / "README.md").read_text()
  blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
  return [line.strip() for line in blocks[0].strip().splitlines() if line.strip()]


def test_readme_starts_with_two_commands():
  cmds = readme_commands()
  assert len(cmds) == 2
  assert cmds[0].startswith("pip install") and " rpd " in f" {cmds[0]} "
  assert cmds[1].startswith("pip install") and "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
  ci = (ROOT / ".ci" / "run").read_text()
  assert readme_commands()[1] in ci
