"""Fixtures live in tests/fixtures/, one module per real part the tests start or use."""

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.edgetpu",
    "tests.fixtures.broker",
    "tests.fixtures.netns",
    "tests.fixtures.nspawn",
    "tests.fixtures.dataset",
]
