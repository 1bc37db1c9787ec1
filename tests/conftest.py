import os

import hypothesis
from hypothesis import settings

# Property tests run with a fresh random seed each time, printed in the report's header, so that
# every run tries new cases and a failure can be replayed: pytest --hypothesis-seed=SEED.
settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    seed = config.getoption("hypothesis_seed", None)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
        config.option.hypothesis_seed = str(seed)
        hypothesis.core.global_force_seed = seed


def pytest_report_header(config):
    seed = config.getoption("hypothesis_seed")
    return f"hypothesis seed: {seed} (replay with: python -m pytest --hypothesis-seed={seed})"
