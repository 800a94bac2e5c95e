"""The fidelity suite: a messy master promoted onto an older, different slave, compared exhaustively.

Each engine has its own test modules and helpers here; the files side is
test_files.py with its tree builder and walker in filetree.py.
"""
