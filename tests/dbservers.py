# placeholder; replaced by the database fixtures
