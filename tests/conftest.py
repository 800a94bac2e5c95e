pytest_plugins = ["tests.dbservers"]
