"""Hypothesis settings for the whole suite.

The machine the suite runs on is shared and noisy, so no per-example deadline;
``max_examples`` stays moderate so that the whole suite runs in well under two
minutes. Set ``HYPOTHESIS_PROFILE=thorough`` for a longer search.
"""

import os

from hypothesis import settings

settings.register_profile("ce_tutorial", deadline=None, max_examples=40)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ce_tutorial"))
