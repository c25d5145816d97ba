import os

import pytest

# Each test process gets one torch thread, as the workers of a real run do.
os.environ.setdefault("POLICYLAB_THREADS", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    from policylab.core.seeding import set_threads

    set_threads(1)
