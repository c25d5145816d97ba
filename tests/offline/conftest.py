import pytest

from policylab.catalog import build_dataset


@pytest.fixture(scope="session")
def datasets(tmp_path_factory):
    """pendulum-mix10, -expert and -random, built once per test process (trains the SAC expert once);
    every test that uses it carries xdist_group("pendulum-data"), so one worker builds it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("POLICYLAB_DATA", str(tmp_path_factory.mktemp("datasets")))
    paths = {name: build_dataset(name) for name in ("pendulum-mix10", "pendulum-expert", "pendulum-random")}
    yield paths
    mp.undo()
