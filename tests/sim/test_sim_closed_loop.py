from __future__ import annotations

import json

import pytest

from groot.sim import libero

pytestmark = [pytest.mark.sim, pytest.mark.skipif(not libero.libero_available(),
                                                  reason="LIBERO not installed (pip install 'groot[sim]')")]


def test_rollout_loop_with_a_policy_like_expert_writes_report_and_videos(tmp_path):
    from groot.data.video import decode_frames
    from groot.eval.closed_loop import evaluate
    from groot.sim.experts import ExpertPolicy

    report = evaluate(lambda env: ExpertPolicy(env), "libero_object", tmp_path, tasks=[2],
                      episodes_per_task=2, action_horizon=4, video="all", image_size=64, max_steps=12,
                      progress=False)
    episodes = report["episodes"]
    assert [e["init_state"] for e in episodes] == [0, 1]
    # 12 steps with horizon 4: exactly 3 policy queries, stopped by the step limit
    assert all(e["steps"] == 12 and e["policy_queries"] == 3 and not e["success"] for e in episodes)
    assert report["tasks"][2]["episodes"] == 2 and report["success_rate"] == 0.0
    frames = decode_frames(episodes[0]["video"], [0.0, 12 / libero.CONTROL_FPS])
    assert frames.shape == (2, 64, 128, 3)  # agent view | wrist view, reset frame + 12 steps
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["protocol"]["max_steps"] == 12 and saved["protocol"]["action_horizon"] == 4
    markdown = (tmp_path / "report.md").read_text()
    assert "pick up the salad dressing and place it in the basket" in markdown and "0/2" in markdown


def test_without_videos_the_policy_sees_the_same_images(tmp_path):
    """video="none" renders only the steps before a query; the policy's inputs stay bit for bit those of
    an evaluation that renders every step for its videos."""
    import hashlib

    from groot.eval.closed_loop import evaluate
    from groot.sim.experts import ExpertPolicy

    seen: dict[str, list[str]] = {}

    def recording(mode: str):
        def make(env):
            expert = ExpertPolicy(env)

            class Recorder:
                def get_action(self, observation):
                    images = b"".join(observation[k].tobytes() for k in ("video.image", "video.wrist_image"))
                    seen.setdefault(mode, []).append(hashlib.sha256(images).hexdigest())
                    return expert.get_action(observation)

            return Recorder()

        return make

    for mode in ("all", "none"):
        evaluate(recording(mode), "libero_object", tmp_path / mode, tasks=[2], episodes_per_task=1,
                 action_horizon=4, video=mode, image_size=48, max_steps=12, progress=False)
    assert len(seen["all"]) == 3 and len(set(seen["all"])) == 3
    assert seen["none"] == seen["all"]
    assert not list((tmp_path / "none" / "videos").iterdir())
