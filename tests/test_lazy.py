"""Packages with lazy attributes import their submodules only when a name is used."""

from __future__ import annotations

import subprocess
import sys


def test_names_load_their_submodule_on_first_use():
    code = (
        "import sys, vist3a.evaluation as ev, vist3a.alignment as al\n"
        "assert 'vist3a.evaluation.relations' not in sys.modules and 'vist3a.alignment.rewards' not in sys.modules\n"
        "ev.judge_left_right; al.REWARD_MIXES\n"
        "assert 'vist3a.evaluation.relations' in sys.modules and 'vist3a.alignment.rewards' in sys.modules\n"
        "try:\n    ev.no_such_name\nexcept AttributeError as err:\n    assert 'no_such_name' in str(err)\n"
        "else:\n    raise SystemExit('no AttributeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
