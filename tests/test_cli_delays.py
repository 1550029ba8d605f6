"""``rpd delays``: output, JSON keys, bad input (one line, exit code 2)."""
import json
import subprocess
import sys

import pytest
import sympy as sp

from rpd.cli import main
from rpd.theory import delay


def test_json_keys_and_formula(capsys):
  assert main(["delays", "--schedule", "pipedream", "--stages", "6", "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["schedule"] == "pipedream" and out["stages"] == 6
  assert len(out["tau"]) == 6 and all(len(r) == 6 for r in out["tau"])
  assert all(isinstance(v, int) for r in out["tau"] for v in r)
  assert out["tau_max"] == 33 == max(max(r) for r in out["tau"])
  S = sp.Symbol("S")
  expr = sp.sympify(out["tau_max_formula"], locals={"S": S})
  for s_val in range(1, 40):
    assert int(expr.subs(S, s_val)) == delay.tau_max(s_val)
  assert out["closed_form_matches_simulation"] is True


def test_text_output(capsys):
  assert main(["delays", "--stages", "3"]) == 0
  text = capsys.readouterr().out
  assert "tau_max = 7" in text and "closed form equals simulation: True" in text


@pytest.mark.parametrize("argv, needle", [
    (["delays", "--stages", "0"], "0"),
    (["delays", "--stages", "-3"], "-3"),
    (["delays", "--stages", "2.5"], "2.5"),
    (["delays", "--stages", "abc"], "abc"),
    (["delays", "--stages", "4", "--schedule", "nosuch"], "nosuch"),
])
def test_bad_input_one_line_exit_2(argv, needle):
  r = subprocess.run([sys.executable, "-m", "rpd", *argv], capture_output=True, text=True)
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr
