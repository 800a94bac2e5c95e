pytest_plugins = ["tests.shipperenv", "tests.netns", "tests.dbservers"]
