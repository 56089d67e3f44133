"""RL post-training of GR00T policies: PPO with flow-SDE noise in LIBERO (`groot rl`).

`sde` (the stochastic denoising step), `actor` (sampler + critic around the model's public pieces),
`value`, `gae`, `ppo` (losses), `envs` (LIBERO worker processes), `synthetic` (simulator-free
stand-ins), `rollout` (the rollout role), `trainer` (the learner role and the loop), `recipes`
(default settings), `commands` (the CLI).
"""
