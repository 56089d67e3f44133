"""SIGKILL a real fine-tune in the middle of deleting an old checkpoint, again and again: every
`checkpoint-<step>` folder stays complete and loadable, and start-up leaves at most
`--save-total-limit` of them.

A delete of a tiny checkpoint takes about a millisecond, too short to land kills in. The fine-tune runs
under a wrapper that only replaces `shutil.rmtree` by one that deletes file by file, slowly, and says
when it starts; the test kills the run at a random moment inside that delete (a rotation's, or the
clean-up of one at the next start-up)."""

import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from groot.model.gr00t_n15 import GR00TN15
from groot.train import checkpointing as ckpt

KEEP = 2

_SLOW_DELETES = textwrap.dedent("""
    import os, shutil, sys, time

    def slow_rmtree(path, *args, **kwargs):
        print("deleting", path, flush=True)
        for dirpath, dirnames, filenames in os.walk(path, topdown=False):
            for name in filenames:
                os.unlink(os.path.join(dirpath, name))
                time.sleep(0.03)
            os.rmdir(dirpath)

    shutil.rmtree = slow_rmtree
    from groot.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _run_until_killed_mid_delete(argv, rng, timeout=120.0) -> bool:
    """Start the fine-tune; SIGKILL it 0-0.25 s into its first delete. False if it never deleted."""
    process = subprocess.Popen([sys.executable, "-c", _SLOW_DELETES, *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                line = process.stdout.readline()
                if not line:  # the run ended
                    return False
                if line.startswith("deleting"):
                    time.sleep(rng.uniform(0.0, 0.25))
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(timeout=30)
                    return True
        raise AssertionError("the fine-tune did not delete a checkpoint in time")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _assert_checkpoints_whole(out):
    named = sorted(p for p in out.iterdir() if p.name.startswith("checkpoint-"))
    partial = [p.name for p in named if not ckpt.is_complete(p)]
    assert not partial, f"partial checkpoint folders after a kill: {partial}"
    # a kill between publishing a checkpoint and rotating leaves one more, until the next start-up
    assert len(named) <= KEEP + 1, [p.name for p in named]


@pytest.mark.slow
def test_sigkills_during_rotation_leave_only_whole_checkpoints(libero_dataset, tmp_path):
    out = tmp_path / "run"
    argv = ["finetune", "--dataset-path", str(libero_dataset), "--output-dir", str(out),
            "--data-config", "libero_panda", "--base-model", "tiny", "--batch-size", "2",
            "--max-steps", "1000", "--save-steps", "1", "--save-total-limit", str(KEEP),
            "--logging-steps", "1", "--dataloader-num-workers", "0", "--resume"]
    rng = random.Random(0)
    kills = 0
    for _ in range(4):
        kills += _run_until_killed_mid_delete(argv, rng)
        _assert_checkpoints_whole(out)
    assert kills == 4
    ckpt.clean_leftovers(out, KEEP)  # what the next start-up does
    assert sorted(p.name for p in out.iterdir() if p.name != "metrics.jsonl") == [
        p.name for _, p in ckpt.list_checkpoints(out)]
    remaining = ckpt.list_checkpoints(out)
    assert 0 < len(remaining) <= KEEP
    for step, path in remaining:
        assert ckpt.load_trainer_state(path)["global_step"] == step
        assert ckpt.load_optimizer_state(path / ckpt.STATE_DIR)["state"]
        GR00TN15.from_pretrained(path)
