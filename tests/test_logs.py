"""mnist_jax.core.logs: the stdout filter that drops gloo's healthy connection summary, and nothing
else, in a fresh process (it rewires file descriptor 1)."""

from mnist_jax.core import logs
from tests.conftest import run_code

SUMMARY = (
    "[Gloo] Rank 1 is connected to {} peer ranks. Expected number of connected peer ranks is : 3"
)
HEALTHY, SHORT = SUMMARY.format(3), SUMMARY.format(2)

FILTERED = f"""
import os, sys
from mnist_jax.core import logs
print("before")
logs.filter_stdout()
print("python line")
print({HEALTHY!r})
print({SHORT!r})
sys.stdout.flush()
os.system("echo from a child process; echo '{HEALTHY}'")  # C/C++ writes to fd 1 go through too
print("last, without a newline", end="")
"""


def test_only_the_healthy_gloo_summary_is_dropped():
    result = run_code(FILTERED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "before", "python line", SHORT, "from a child process", "last, without a newline",
    ]  # fmt: skip


def test_the_summary_pattern():
    assert logs.healthy_gloo_summary(HEALTHY + "\n")
    assert not logs.healthy_gloo_summary(SHORT)
    assert not logs.healthy_gloo_summary("[Gloo] Rank 0 failed to connect")
