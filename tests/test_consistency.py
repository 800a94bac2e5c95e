"""A set taken while the databases are busy restores to one consistent moment.

Real servers, real workloads, the real CLI: `shipper snapshot` runs while
clients commit transactions, then `shipper restore-db --as` loads the dump
beside the original, and the copy must satisfy the workload's invariant.
"""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import subprocess
import threading
import time
import uuid
from typing import List

import pymysql
import pytest

from tests.dbservers import postgresql_bindir
from tests.shipperenv import ShipperEnv

pytestmark = pytest.mark.slow

ACCOUNTS = 200
OPENING_BALANCE = 1_000
WRITERS = 4


def configure(env: ShipperEnv, mariadb: List[dict], postgresql: List[dict]) -> None:
    env.write_config(
        databases={"enabled": True, "mariadb": mariadb, "postgresql": postgresql},
        notify={"email_to": []},
    )
    env.run("init", check=True)


def entry(server, database: str) -> dict:
    return dataclasses.asdict(server.config(databases=[database]))


def take_set(env: ShipperEnv) -> str:
    result = env.run("snapshot", "--json", check=True)
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "complete", outcome
    return outcome["set_id"]


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the workload never got going"
        time.sleep(0.05)


# ---------------------------------------------------------------- PostgreSQL


def pgbench(server, database: str, *args: str, **kw) -> subprocess.Popen:
    argv = [str(postgresql_bindir() / "pgbench"), "-h", server.socket, "-p", str(server.port)]
    argv += ["-U", "postgres", *args, database]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def pgbench_sums(server, database: str) -> tuple:
    [row] = server.sql(
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts),"
        " (SELECT sum(bbalance) FROM pgbench_branches),"
        " (SELECT sum(tbalance) FROM pgbench_tellers),"
        " (SELECT coalesce(sum(delta), 0) FROM pgbench_history),"
        " (SELECT count(*) FROM pgbench_history)",
        database,
    )
    return tuple(int(value) for value in row)


def history(server, database: str) -> int:
    return int(server.sql("SELECT count(*) FROM pgbench_history", database)[0][0])


def test_a_set_taken_under_pgbench_restores_consistent(shipper_env: ShipperEnv, postgresql_server):
    server = postgresql_server
    database = f"bench_{uuid.uuid4().hex[:6]}"
    copy = f"{database}_copy"
    server.sql(f"CREATE DATABASE {database}")
    try:
        init = pgbench(server, database, "-i", "-s", "2", "-q")
        assert init.wait(120) == 0, init.stdout.read()  # type: ignore[union-attr]
        configure(shipper_env, [], [entry(server, database)])

        load = pgbench(server, database, "-c", "4", "-j", "2", "-T", "120", "-n")
        try:
            wait_until(lambda: history(server, database) > 200)
            started = history(server, database)
            set_id = take_set(shipper_env)
            ended = history(server, database)
        finally:
            load.send_signal(signal.SIGINT)
            load.wait(30)
        assert ended > started, "pgbench was not writing while the set was taken"

        shipper_env.run("restore-db", set_id, f"postgresql:{database}", "--as", copy, check=True)
        accounts, branches, tellers, deltas, transactions = pgbench_sums(server, copy)
        assert accounts == branches == tellers == deltas, (accounts, branches, tellers, deltas)
        # The copy holds the moment of the dump: after the set began, before it ended.
        assert started <= transactions <= ended, (started, transactions, ended)
    finally:
        for name in (database, copy):
            server.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---------------------------------------------------------------- MariaDB


class Transfers:
    """WRITERS connections moving money between accounts, one transaction per transfer:
    the total never changes, and every transfer is in the ledger."""

    def __init__(self, server, database: str):
        self.server, self.database = server, database
        self.stop = threading.Event()
        self.committed = 0
        self.errors: List[BaseException] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, args=(n,)) for n in range(WRITERS)]

    def __enter__(self) -> Transfers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        assert not self.errors, self.errors

    def _work(self, seed: int) -> None:
        rng = random.Random(seed)
        try:
            conn = self.server.connect(self.database)
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    self._transfer(conn, cur, rng)
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by __exit__
            self.errors.append(exc)

    def _transfer(self, conn, cur, rng: random.Random) -> None:
        source, target = rng.sample(range(1, ACCOUNTS + 1), 2)
        amount = rng.randint(1, 50)
        try:
            cur.execute("BEGIN")
            cur.execute(
                "UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, source)
            )
            cur.execute(
                "UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, target)
            )
            cur.execute(
                "INSERT INTO ledger (source, target, amount) VALUES (%s, %s, %s)",
                (source, target, amount),
            )
            cur.execute("COMMIT")
        except pymysql.err.OperationalError as exc:
            if exc.args[0] not in (1205, 1213):  # lock wait timeout, deadlock: try another
                raise
            conn.rollback()
            return
        with self.lock:
            self.committed += 1


def make_bank(server, database: str) -> None:
    server.sql(f"CREATE DATABASE {database}")
    server.sql(
        "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;"
        "CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, source INT NOT NULL,"
        " target INT NOT NULL, amount INT NOT NULL) ENGINE=InnoDB;"
        # Dumped between the two (tables go in name order), so that a dump without one
        # consistent snapshot would see the ledger well after the balances.
        "CREATE TABLE filler (id INT PRIMARY KEY, pad CHAR(96)) ENGINE=InnoDB;"
        f"INSERT INTO accounts SELECT seq, {OPENING_BALANCE} FROM seq_1_to_{ACCOUNTS};"
        "INSERT INTO filler SELECT seq, CONCAT(MD5(seq), MD5(-seq), MD5(seq * 7))"
        " FROM seq_1_to_100000",
        database,
    )


def bank_books(server, database: str) -> tuple:
    """(total, accounts whose balance disagrees with the ledger, ledger rows)."""
    [(total,)] = server.sql("SELECT SUM(balance) FROM accounts", database)
    [(wrong,)] = server.sql(
        "SELECT COUNT(*) FROM accounts a"
        f" WHERE a.balance <> {OPENING_BALANCE}"
        " - COALESCE((SELECT SUM(amount) FROM ledger WHERE source = a.id), 0)"
        " + COALESCE((SELECT SUM(amount) FROM ledger WHERE target = a.id), 0)",
        database,
    )
    [(rows,)] = server.sql("SELECT COUNT(*) FROM ledger", database)
    return int(total), int(wrong), int(rows)


def test_a_set_taken_under_concurrent_transfers_restores_consistent(
    shipper_env: ShipperEnv, mariadb_server
):
    server = mariadb_server
    database = f"bank_{uuid.uuid4().hex[:6]}"
    copy = f"{database}_copy"
    make_bank(server, database)
    try:
        configure(shipper_env, [entry(server, database)], [])
        with Transfers(server, database) as transfers:
            wait_until(lambda: transfers.committed > 200)
            started = transfers.committed
            set_id = take_set(shipper_env)
            ended = transfers.committed
        assert ended > started, "nobody was writing while the set was taken"

        shipper_env.run("restore-db", set_id, f"mariadb:{database}", "--as", copy, check=True)
        total, wrong, rows = bank_books(server, copy)
        assert total == ACCOUNTS * OPENING_BALANCE
        assert wrong == 0, f"{wrong} balances disagree with the ledger"
        assert started <= rows <= ended, (started, rows, ended)
    finally:
        for name in (database, copy):
            server.sql(f"DROP DATABASE IF EXISTS {name}")
