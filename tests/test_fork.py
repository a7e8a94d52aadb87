"""Forked children: they work, on one thread, with the parent's results.

After a multi-threaded kernel the OpenMP runtime holds a thread pool that
libgomp cannot use in a child made by fork(): a parallel region there waits
forever.  fastsce marks such a child (os.register_at_fork) and runs its
kernels on one thread.  Every scenario runs in a subprocess in its own
session, killed as a whole process group if it has not finished in time, so
a hang fails the test instead of hanging the suite.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fastsce import _kernels

TIMEOUT = 120

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork"), reason="os.fork is a POSIX call: no forked children to test"
)

PRELUDE = textwrap.dedent("""
    import multiprocessing, os, sys, warnings
    import numpy as np
    import fastsce
    from fastsce import _config

    X = np.random.default_rng(0).standard_normal((4096, 1000)).astype(np.float32)
    T = np.random.default_rng(1).integers(0, 1000, 4096)

    def large_call(_=None):
        loss, grad = fastsce.cross_entropy_with_grad(X, T)
        return loss, grad.tobytes(), _config.threads_for(4096, X.size)

    PARENT_LOSS, PARENT_GRAD, PARENT_THREADS = large_call()
    assert _config._pool_started == (PARENT_THREADS > 1)

    def in_forked_child(check):
        # check() in a child made by os.fork; fails unless it returns True
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if check() else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
""")


def run_script(body, directory, prelude=PRELUDE):
    """Run prelude + body as a script file (spawn workers re-import it) in a fresh
    interpreter in its own process group; the whole group is killed on a time-out."""
    script = directory / "scenario.py"
    script.write_text(prelude + textwrap.dedent(body))
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"hung for {TIMEOUT} s (killed): {stdout}\n{stderr}")
    assert process.returncode == 0, stdout + stderr


multi_threaded = pytest.mark.skipif(
    not _kernels.openmp_enabled() or (os.cpu_count() or 1) < 2,
    reason="the parent must run a kernel on several threads to start the OpenMP pool",
)


@multi_threaded
def test_an_os_fork_child_returns_the_parents_bits_on_one_thread(tmp_path):
    run_script(
        """
        assert PARENT_THREADS > 1

        def check():
            return large_call() == (PARENT_LOSS, PARENT_GRAD, 1) and fastsce.get_num_threads() == 1

        in_forked_child(check)
    """,
        tmp_path,
    )


@multi_threaded
def test_set_num_threads_in_the_child_warns_once_and_the_call_returns(tmp_path):
    run_script(
        """
        def check():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fastsce.set_num_threads(2)
                fastsce.set_num_threads(2)
                fastsce.set_num_threads(1)
            messages = [str(w.message) for w in caught]
            warned_once = (len(messages) == 1 and "forked" in messages[0]
                           and issubclass(caught[0].category, RuntimeWarning))
            return warned_once and large_call() == (PARENT_LOSS, PARENT_GRAD, 1)

        in_forked_child(check)
    """,
        tmp_path,
    )


@multi_threaded
def test_a_fork_pool_maps_large_calls_and_the_parent_keeps_its_threads(tmp_path):
    run_script(
        """
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(large_call, range(4))
        assert all(r == (PARENT_LOSS, PARENT_GRAD, 1) for r in results)
        # the parent after the fork: still multi-threaded, same bits
        assert large_call() == (PARENT_LOSS, PARENT_GRAD, PARENT_THREADS)
        assert PARENT_THREADS > 1 and fastsce.get_num_threads() > 1
    """,
        tmp_path,
    )


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawn_and_forkserver_workers_keep_their_threads(method, tmp_path):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"the {method} start method is not available on this platform")
    run_script(
        f"""
        if __name__ == "__main__":
            with multiprocessing.get_context({method!r}).Pool(2) as pool:
                results = pool.map(large_call, range(2))
            assert all(r == (PARENT_LOSS, PARENT_GRAD, PARENT_THREADS) for r in results)
    """,
        tmp_path,
    )


def test_a_child_forked_before_any_threads_keeps_them(tmp_path):
    """Forking before the pool exists is safe: the child may start threads itself."""
    body = """
        import numpy as np

        def check():
            x = np.zeros((4096, 1000), np.float32)
            fastsce.cross_entropy(x, np.zeros(4096, np.int64))
            return _config.threads_for(4096, x.size) == _config.USABLE_CPUS

        in_forked_child(check)
    """
    # the prelude's helpers without its multi-threaded call
    prelude = PRELUDE[: PRELUDE.index("X = ")] + PRELUDE[PRELUDE.index("def in_forked_child") :]
    run_script(body, tmp_path, prelude=prelude)
