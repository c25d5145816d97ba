import pytest


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """One cache of base models for the session (tiny-gcd builds in a few seconds)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def base_models(models_dir, monkeypatch):
    monkeypatch.setenv("POLICYLAB_MODELS", str(models_dir))
    return models_dir
