"""Start-up cost of the command: what ``import vist3a.cli.main`` loads, and the collector pause of the big imports."""

from __future__ import annotations

import subprocess
import sys

#: Libraries only the commands themselves may import (inside their functions): torch and what diffusers and
#: transformers pull in (torch._dynamo, peft, scipy), and sentence encoders' stacks.
HEAVY = ("torch", "torch._dynamo", "diffusers", "transformers", "peft", "scipy", "sklearn", "sentence_transformers",
         "accelerate", "imageio", "numpy")


def _run(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_importing_the_cli_loads_no_heavy_library():
    """``vist3a --help`` and argument errors stay fast: every command imports its libraries when it runs."""
    _run(f"import sys, vist3a.cli.main\nloaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
         "assert not loaded, f'import vist3a.cli.main imported {loaded}'")


def test_collector_paused_during_the_first_import_then_frozen():
    # colorsys stands in for the model libraries (a small module nothing here imports)
    _run(
        "import gc, sys\n"
        "from vist3a.cli import startup\n"
        "startup.MODEL_LIBRARIES = ('colorsys',)\n"
        "assert 'colorsys' not in sys.modules and gc.get_freeze_count() == 0\n"
        "with startup.collector_paused():\n"
        "    assert not gc.isenabled()\n"
        "    startup.import_model_libraries()\n"
        "assert 'colorsys' in sys.modules and gc.isenabled() and gc.get_freeze_count() > 0\n"
        "frozen = gc.get_freeze_count()\n"
        "with startup.collector_paused():\n"  # imported already: a second command in this process is not paused
        "    assert gc.isenabled()\n"
        "assert gc.get_freeze_count() == frozen\n"
    )


def test_collector_resumed_and_nothing_frozen_after_an_error():
    _run(
        "import gc\n"
        "from vist3a.cli import startup\n"
        "startup.MODEL_LIBRARIES = ('colorsys',)\n"
        "try:\n"
        "    with startup.collector_paused():\n"
        "        raise ValueError('bad input')\n"
        "except ValueError:\n"
        "    pass\n"
        "assert gc.isenabled() and gc.get_freeze_count() == 0\n"
    )


def test_an_unknown_verbosity_is_a_one_line_error(monkeypatch, capsys):
    import pytest

    from vist3a.cli.main import main

    monkeypatch.setenv("VIST3A_VERBOSITY", "loud")
    with pytest.raises(SystemExit) as info:
        main(["info", "--help"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and "VIST3A_VERBOSITY" in err and "'loud'" in err and "info" in err


def test_verbosity_sets_vist3a_s_loggers_only_when_asked(monkeypatch):
    import logging

    import pytest

    from vist3a.cli.main import main

    vist3a_logger, library = logging.getLogger("vist3a"), logging.getLogger("diffusers")
    monkeypatch.setattr(vist3a_logger, "level", logging.ERROR)  # restored after the test
    monkeypatch.setattr(library, "level", logging.NOTSET)
    monkeypatch.delenv("VIST3A_VERBOSITY", raising=False)
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    assert vist3a_logger.level == logging.ERROR  # unset: what the caller chose stays
    monkeypatch.setenv("VIST3A_VERBOSITY", " Info ")
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    assert vist3a_logger.level == logging.INFO and library.level == logging.NOTSET
