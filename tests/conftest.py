pytest_plugins = [
    "tests.shipperenv",
    "tests.netns",
    "tests.dbservers",
    "tests.sinks",
    "tests.seaweed",
]


def pytest_configure(config) -> None:
    # Repositories made by the suite get restic's cheapest key derivation (tests/tools/restic).
    from tests import shipperenv

    shipperenv.CHEAP_KEYS = True
