"""Helpers shared by the policy tests."""


def observation_of(raw_step):
    """A raw dataset step without its actions: what a policy receives."""
    return {key: value for key, value in raw_step.items() if not key.startswith("action.")}
