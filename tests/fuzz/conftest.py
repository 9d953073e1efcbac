"""Hypothesis profiles for the fuzz suite, picked by ``RESNET_SPEC_FUZZ_PROFILE`` (default ``ci``).

* ``ci``: the CI run. Derandomized (the same examples every run, so CI is reproducible) and
  without the example database. The example counts below are the per-test budgets; the whole
  suite takes about five minutes of CPU on a 2-core machine (docs/fuzzing.md).
* ``long``: 5,000 examples per property, random seeds, failures kept in the local
  ``.hypothesis/`` database so a rerun replays them first.
* ``dev``: a quick local smoke run (20 examples).

``RESNET_SPEC_FUZZ_EXAMPLES=N`` overrides the profile's ``max_examples`` (a time-boxed run).

Each test scales its own ``max_examples`` from the profile with :func:`examples`, because the
properties differ in cost by two orders of magnitude (validating a spec takes milliseconds,
building it in Keras a few hundred).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("RESNET_SPEC_FUZZ_PROFILE", "ci")

_common = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,
}
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, **_common)
settings.register_profile("long", max_examples=5000, derandomize=False, **_common)
settings.register_profile("dev", max_examples=20, derandomize=True, database=None, **_common)
settings.load_profile(PROFILE)
if os.environ.get("RESNET_SPEC_FUZZ_EXAMPLES"):  # override the profile's max_examples (time-boxed runs)
    settings.register_profile(
        f"{PROFILE}-custom", settings.get_profile(PROFILE), max_examples=int(os.environ["RESNET_SPEC_FUZZ_EXAMPLES"])
    )
    settings.load_profile(f"{PROFILE}-custom")

# Per-property budgets in the CI profile, as multiples of its max_examples (200): the cheap
# properties run more examples. Every other profile runs max_examples for every property (the
# long profile: 5,000 each).
CI_SCALE = {
    "validate": 5.0,  # validator + oracle only: cheap
    "torch": 1.0,
    "keras": 0.5,  # Keras and torch on each spec (Keras ~0.3 s a model); torch alone runs 200 in its own property
    "mutation": 5.0,
    "mutation_build": 1.0,
    "text": 5.0,
}


def examples(kind: str) -> int:
    scale = CI_SCALE[kind] if PROFILE == "ci" else 1.0
    return max(1, int(settings.default.max_examples * scale))
