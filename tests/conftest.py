pytest_plugins = [
    "tests.shipperenv",
    "tests.netns",
    "tests.dbservers",
    "tests.sinks",
    "tests.seaweed",
]
