"""`tfkit.console`: a message after an open progress-bar line starts a line of its own, and
no blank line is added after a complete one."""

import io
import sys

import pytest

from tfkit.console import end_line, tracking_stdout


@pytest.mark.parametrize(
    "writes, added",
    [
        ([], ""),
        (["3/20 [==>....] - loss: 2.1"], "\n"),
        (["\b\b\b\r5/20 [====>...]"], "\n"),  # a progress bar redrawn in place
        (["epoch 1\n"], ""),
        (["partial", ""], "\n"),  # an empty write changes nothing
        (["5/20 [===>..]", "\b\b\r20/20 [======] - loss: 1.0\n"], ""),  # finalized
    ],
)
def test_end_line_ends_only_an_open_line(monkeypatch, writes, added):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with tracking_stdout():
        for text in writes:
            sys.stdout.write(text)
        end_line()
        end_line()  # a second call finds the line ended
    assert sys.stdout is out  # restored
    assert out.getvalue() == "".join(writes) + added


def test_end_line_outside_tracking_always_ends_the_line(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    sys.stdout.write("done\n")
    end_line()
    assert out.getvalue() == "done\n\n"
