"""The command line's usage errors: one line on stderr naming the option, exit code 2 (never 1,
which means "checks failed"), no traceback, and nothing run before the arguments are known good.
Every case here is rejected before any check runs, so each takes about an interpreter start."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import gradcheck

ROOT = Path(gradcheck.__file__).resolve().parent.parent


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradcheck", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (("sweep", "--examples", "-1"), "gradcheck sweep: error: --examples=-1 must be >= 1"),
    (("sweep", "--examples", "0"), "gradcheck sweep: error: --examples=0 must be >= 1"),
    (("sweep", "--jobs", "0"), "gradcheck sweep: error: --jobs=0 must be >= 1"),
    (("sweep", "--max-params", "0"), "gradcheck sweep: error: --max-params=0 must be >= 1"),
    (("sweep", "--dtype", "float16"), "gradcheck sweep: error: --dtype 'float16' must be float64 or float32"),
    (("sweep", "--activations", "nosuch"), "gradcheck sweep: error: unknown activation(s) ['nosuch']"),
    (("sweep", "--bogus"), "gradcheck sweep: error: unrecognized arguments: --bogus"),
])
def test_usage_errors_are_one_line_exit_2_and_no_traceback(args, message):
    done = run(*args)
    assert done.returncode == 2, done
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = str(blocker / "reports")
    for args in (("sweep", "--out", target), ("check", "examples/origin_xor_step.py:factory", "--report", target),
                 ("report", "no-such.json", "--out", target)):
        done = run(*args)
        assert done.returncode == 2, (args, done)
        assert f"cannot write into {target!r}" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and done.stdout == "", done


def test_python_m_gradcheck_and_the_version_flags():
    for flag in ("--version", "-V"):
        done = run(flag)
        assert done.returncode == 0 and done.stdout.strip() == f"gradcheck {gradcheck.__version__}", done


def test_a_mistyped_command_is_a_usage_error_naming_the_choices():
    done = run("swep")
    assert done.returncode == 2 and "invalid choice: 'swep'" in done.stderr and "Traceback" not in done.stderr


def test_teach_takes_the_listed_number_and_suggests_lessons_for_a_word():
    from gradcheck.teach.catalog import LESSONS, get_lesson

    assert get_lesson("3") is LESSONS[2]
    with pytest.raises(ValueError, match=r"unknown lesson 'tanh' \(did you mean tanh-"):
        get_lesson("tanh")
    with pytest.raises(ValueError, match=f"numbered 1 to {len(LESSONS)}"):
        get_lesson(str(len(LESSONS) + 1))
    done = run("teach", "tanh")
    assert done.returncode == 2 and "did you mean" in done.stderr and "Traceback" not in done.stderr
