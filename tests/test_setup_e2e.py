"""Two servers from scratch: `shipper setup slave`, then `shipper setup master`.

The end-to-end test runs each side in its own network namespace (tests/netns.py),
the slave's receiver on its default port, and follows an operator: set up the
slave, give the master the printed fingerprint, see the set arrive; then the
mistakes (wrong fingerprint, wrong password, stopped receiver), each a clear
error that changes nothing on the slave. The YAML editing setup relies on is
tested on its own first.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from shipper.core import config_edit
from shipper.core.config import read_secret
from tests.seaweed import SECRET_KEY, SeaweedFS
from tests.shipperenv import (
    PASSWORD,
    TOOLS,
    ShipperEnv,
    free_port,
    make_dataset,
    mutate_dataset,
    write_secret,
)
from tests.test_receiver import (
    Side,
    pair,  # noqa: F401  (the fixture)
    printed_fingerprint,
    repository_files,
    setup_master,
    setup_slave,
    slave_digest,
    write_master_config,
)

# ---------------------------------------------------------------- editing the config as text

OPERATOR_CONFIG = """\
# my master
paths: [/srv]   # what the sets hold
repository:
  # where sets go
  url: /old/place   # replaced by setup

  lock_wait: 5
# the schedule
schedule: "*/5 * * * *"
"""


def test_edit_keeps_comments_and_other_keys():
    values = {
        ("repository", "url"): "rest:https://10.0.0.2:8000/master/",
        ("repository", "cacert"): "/etc/shipper/tls/slave.crt",
        ("role",): "master",
        ("enabled",): True,
    }
    text = config_edit.edit_yaml(OPERATOR_CONFIG, values)
    assert "# my master\npaths: [/srv]   # what the sets hold\n" in text
    assert '  url: "rest:https://10.0.0.2:8000/master/"   # replaced by setup\n' in text
    assert "  lock_wait: 5\n  cacert: /etc/shipper/tls/slave.crt\n# the schedule\n" in text
    data = yaml.safe_load(text)
    assert (
        data["schedule"] == "*/5 * * * *" and data["role"] == "master" and data["enabled"] is True
    )
    assert config_edit.edit_yaml(text, values) == text


def test_edit_adds_a_missing_section_and_converts_an_empty_one():
    text = config_edit.edit_yaml("receiver: {}\n", {("receiver", "listen"): ":8000"})
    assert yaml.safe_load(text) == {"receiver": {"listen": ":8000"}}
    text = config_edit.edit_yaml("role: slave\n", {("receiver", "repo_dir"): "/var/lib/x"})
    assert yaml.safe_load(text) == {"role": "slave", "receiver": {"repo_dir": "/var/lib/x"}}


def test_edit_refuses_what_it_cannot_do_safely():
    with pytest.raises(config_edit.EditError, match="by hand"):
        config_edit.edit_yaml("repository: {url: /x}\n", {("repository", "url"): "/y"})


DESTINATIONS_CONFIG = """\
role: master
destinations:   # where copies go
- name: usb   # my disk
  kind: local
  url: /mnt/usb

# after the list
enabled: true
"""


def test_a_destination_entry_is_added_replaced_and_kept_with_the_comments():
    spare = {"name": "spare", "kind": "slave", "url": "rest:https://10.0.0.3:8000/master/"}
    text = config_edit.edit_list_entry(DESTINATIONS_CONFIG, "destinations", spare)
    assert "destinations:   # where copies go\n- name: usb   # my disk\n" in text
    assert '  url: /mnt/usb\n- name: spare\n  kind: slave\n  url: "rest:https' in text
    assert "# after the list\nenabled: true\n" in text
    assert config_edit.edit_list_entry(text, "destinations", spare) == text
    moved = config_edit.edit_list_entry(
        text, "destinations", {"name": "usb", "kind": "local", "url": "/mnt/other", "x": None}
    )
    data = yaml.safe_load(moved)
    assert data["destinations"] == [{"name": "usb", "kind": "local", "url": "/mnt/other"}, spare]
    assert data["enabled"] is True and "# after the list" in moved
    fresh = config_edit.edit_list_entry("role: master\ndestinations: []\n", "destinations", spare)
    assert yaml.safe_load(fresh)["destinations"] == [spare]
    with pytest.raises(config_edit.EditError, match="by hand"):
        config_edit.edit_list_entry(
            "destinations: [{name: a, kind: local}]\n", "destinations", spare
        )


def test_enable_and_disable_change_only_that_key(tmp_path: Path):
    path = tmp_path / "shipper.yml"
    path.write_text("repository:\n  url: /r   # the repo\nenabled: true  # on\n")
    assert config_edit.set_enabled(str(path), False)
    assert path.read_text() == "repository:\n  url: /r   # the repo\nenabled: false  # on\n"
    assert not config_edit.set_enabled(str(path), False)
    assert config_edit.set_enabled(str(path), True)


def test_enable_names_a_missing_config(tmp_path: Path):
    side = Side(tmp_path)
    result = side.run("enable")
    assert result.returncode == 1 and "no such config file" in result.stderr


# ---------------------------------------------------------------- two servers, end to end


@pytest.mark.slow
@pytest.mark.netns
def test_two_servers_from_scratch(two_hosts, tmp_path: Path):
    slave = Side(tmp_path / "slave", two_hosts.slave)
    master = Side(tmp_path / "master", two_hosts.master)
    shared = write_secret(tmp_path / "shared-password", PASSWORD)
    wrong = write_secret(tmp_path / "other-password", PASSWORD + " but not quite")
    src = tmp_path / "src"
    make_dataset(src, files=80, mib=1)
    address = two_hosts.slave.address

    # the slave: one command; it prints the fingerprint and the master's command
    done = setup_slave(slave, shared)
    assert done.returncode == 0, done.stdout + done.stderr
    fingerprint = printed_fingerprint(done.stdout)
    assert f"shipper setup master --slave {address}:8000 " in done.stdout, done.stdout
    for path in (slave.etc / "secret", slave.etc / "htpasswd", slave.etc / "tls" / "receiver.key"):
        assert path.stat().st_mode & 0o077 == 0, path
    assert PASSWORD not in "".join(p.read_text() for p in slave.etc.rglob("*") if p.is_file())

    write_master_config(master, src)
    operator_text = master.config.read_text()
    before = slave_digest(slave)

    # mistakes on the master: clear errors, nothing written there, nothing changed on the slave
    wrong_fp = fingerprint[:-2] + ("00" if not fingerprint.endswith("00") else "11")
    refused = setup_master(master, shared, address, wrong_fp)
    assert refused.returncode == 1
    assert "fingerprint" in refused.stderr and fingerprint in refused.stderr
    bad_password = setup_master(master, wrong, address, fingerprint)
    assert bad_password.returncode == 1
    assert "refused the credential" in bad_password.stderr
    for result in (refused, bad_password):
        assert "Nothing was written" in result.stderr and "Traceback" not in result.stderr
    assert master.config.read_text() == operator_text and not master.etc.exists()
    assert slave_digest(slave) == before

    # the right fingerprint and password: config, pinned certificate, repository, first set
    made = setup_master(master, shared, address, fingerprint)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "took the first set" in made.stdout
    text = master.config.read_text()
    assert "# the operator's master config" in text and "# what the sets hold" in text
    cfg = yaml.safe_load(text)
    assert cfg["role"] == "master" and cfg["enabled"] is True
    assert cfg["repository"]["url"] == f"rest:https://{address}:8000/master/"
    arrived = slave.sets()
    assert len(arrived) == 1 and arrived[0]["status"] == "complete"
    assert [p["name"] for p in arrived[0]["parts"]] == ["files"]

    # both setups again: nothing changes, no second set, the same receiver process
    pid = json.loads(slave.run("receiver", "status", "--json", check=True).stdout)["pid"]
    again = setup_master(master, shared, f"{address}:8000", fingerprint, "--json")
    assert json.loads(again.stdout)["changes"] == [], again.stdout
    assert json.loads(setup_slave(slave, shared, "--json").stdout)["changes"] == []
    assert json.loads(slave.run("receiver", "status", "--json").stdout)["pid"] == pid
    assert len(slave.sets()) == 1
    # the slave again with another password: refused before anything is written
    before = slave_digest(slave)
    other = setup_slave(slave, wrong)
    assert other.returncode == 1 and "another shared password" in other.stderr, other.stderr
    assert slave_digest(slave) == before

    # the master pushes a second set, but cannot forget or prune
    mutate_dataset(src, percent=10)
    assert json.loads(master.run("snapshot", "--json", check=True).stdout)["status"] == "complete"
    first = slave.sets()[-1]["manifest_snapshot"]
    assert "403" in master.restic("forget", first).stderr
    assert len(slave.sets()) == 2
    assert slave.restic("forget", first).returncode == 0
    kept = repository_files(slave)
    pruned = master.restic("prune")
    assert pruned.returncode != 0 and "403" in pruned.stderr
    assert kept.items() <= repository_files(slave).items()
    pruned_here = slave.run("prune", check=True)
    assert "1 sets kept, 0 " in pruned_here.stdout

    # the receiver stops: the master gets a clear error, quickly, and the slave is untouched
    assert "stopped the receiver" in slave.run("receiver", "stop", check=True).stdout
    before = slave_digest(slave)
    down = setup_master(master, shared, address, fingerprint)
    assert down.returncode == 1 and "cannot reach the receiver" in down.stderr
    clock = time.monotonic()
    failed = master.run("snapshot")
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert address in failed.stderr, failed.stderr
    assert time.monotonic() - clock < 60
    assert slave_digest(slave) == before

    # back up: sets arrive again
    assert "started the receiver" in slave.run("receiver", "start", check=True).stdout
    assert json.loads(master.run("snapshot", "--json", check=True).stdout)["status"] == "complete"
    assert [s["status"] for s in slave.sets()] == ["complete", "complete"]


# ---------------------------------------------------------------- more destinations, one command each


def setup_destination(side: Side, kind: str, name: str, *args: str) -> subprocess.CompletedProcess:
    return side.run("setup", "destination", kind, name, *args, timeout=300)


@pytest.mark.slow
def test_setup_destination_slave_checks_pins_and_changes_nothing_the_second_time(
    pair: Dict[str, Any],  # noqa: F811  (the fixture from test_receiver)
    tmp_path: Path,
):
    master, shared = pair["master"], pair["shared"]
    second = Side(tmp_path / "second")
    port = free_port()
    try:
        done = setup_slave(second, shared, "--listen", f"127.0.0.1:{port}")
        assert done.returncode == 0, done.stderr
        fingerprint = printed_fingerprint(done.stdout)
        assert "shipper setup destination slave NAME --slave " in done.stdout, done.stdout
        where = ("--slave", f"127.0.0.1:{port}", "--password-file", str(shared))
        before = master.config.read_text()

        # the mistakes: each one line, nothing written
        wrong_fp = fingerprint[:-2] + ("00" if not fingerprint.endswith("00") else "11")
        refused = setup_destination(master, "slave", "spare", *where, "--fingerprint", wrong_fp)
        other = write_secret(tmp_path / "other-password", PASSWORD + " but not quite")
        foreign = setup_destination(
            master, "slave", "spare", "--slave", f"127.0.0.1:{port}", "--password-file",
            str(other), "--fingerprint", fingerprint,
        )  # fmt: skip
        for result, words in ((refused, "fingerprint"), (foreign, "not the shared password")):
            assert result.returncode == 1 and words in result.stderr, result.stderr
            assert "Nothing was written" in result.stderr and "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert master.config.read_text() == before

        # a dry run says what it would write and writes nothing
        dry = setup_destination(
            master, "slave", "spare", *where, "--fingerprint", fingerprint, "--dry-run", "--json"
        )
        assert dry.returncode == 0, dry.stderr
        assert any("would write destinations.spare" in c for c in json.loads(dry.stdout)["changes"])
        assert master.config.read_text() == before

        made = setup_destination(master, "slave", "spare", *where, "--fingerprint", fingerprint)
        assert made.returncode == 0, made.stderr
        assert "pinned spare's certificate" in made.stdout and "no repository yet" in made.stdout
        text = master.config.read_text()
        assert "# the operator's master config" in text
        entry = yaml.safe_load(text)["destinations"][0]
        assert entry["url"] == f"rest:https://127.0.0.1:{port}/master/"
        assert (
            entry["rest_password_file"] == yaml.safe_load(text)["repository"]["rest_password_file"]
        )
        again = setup_destination(
            master, "slave", "spare", *where, "--fingerprint", fingerprint, "--json"
        )
        assert json.loads(again.stdout)["changes"] == [], again.stdout
        assert master.config.read_text() == text

        # the next set reaches both slaves, whole; the master cannot forget on the second one
        mutate_dataset(pair["src"], percent=10)
        taken = master.run("snapshot", check=True)
        assert "destination spare: 2 sets copied" in taken.stdout, taken.stdout
        assert [s["id"] for s in second.sets()] == [s["id"] for s in pair["slave"].sets()]
        spare_repo = f"rest:https://127.0.0.1:{port}/master/"
        forgot = plain_restic_on(master, entry, "forget", second.sets()[0]["manifest_snapshot"])
        assert "403" in forgot.stderr, forgot.stderr
        assert len(second.sets()) == 2, spare_repo
    finally:
        second.run("receiver", "stop")


def plain_restic_on(master: Side, entry: Dict[str, Any], *args: str) -> subprocess.CompletedProcess:
    """restic with the master's own credentials against a slave destination."""
    cfg = yaml.safe_load(master.config.read_text())["repository"]
    password = read_secret(entry["rest_password_file"])
    url = entry["url"].replace("rest:https://", f"rest:https://{entry['rest_user']}:{password}@")
    location = write_secret(master.base / f"plain-{entry['name']}-location", url)
    argv = [str(TOOLS / "restic"), "--password-file", cfg["password_file"]]
    argv += ["--repository-file", str(location), "--cacert", entry["cacert"], *args]
    return subprocess.run(
        master.argv(argv), env=master.env(), capture_output=True, text=True, timeout=120
    )


def test_setup_destination_s3_probes_writes_prints_the_policy_and_is_idempotent(
    shipper_env: ShipperEnv, rest_server: Any, seaweedfs: SeaweedFS
):
    env = shipper_env
    env.make_dataset(files=10, mib=1)
    env.write_config(repository={"url": rest_server.url + "master/"})
    env.run("init", check=True)
    bucket = seaweedfs.new_bucket()
    keys = seaweedfs.credential_files(env.base / "creds")
    flags = [
        "--endpoint", seaweedfs.endpoint, "--bucket", f"{bucket}/master",
        "--access-key-id-file", keys["access_key_id_file"],
        "--secret-access-key-file", keys["secret_access_key_file"],
    ]  # fmt: skip
    before = env.config_path.read_text()

    wrong = env.base / "creds" / "wrong-secret"
    write_secret(wrong, "not-the-secret-4711")
    refused = env.run("setup", "destination", "s3", "offsite", *flags[:-1], str(wrong))
    assert refused.returncode == 1 and "refused the credentials" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "not-the-secret" not in refused.stderr
    down = [*flags[:1], f"http://127.0.0.1:{free_port()}", *flags[2:]]
    unreachable = env.run("setup", "destination", "s3", "offsite", *down)
    assert unreachable.returncode == 1 and "cannot reach the object store" in unreachable.stderr
    dry = env.run("setup", "destination", "s3", "offsite", *flags, "--dry-run", check=True)
    assert "would write destinations.offsite (s3)" in dry.stdout
    assert env.config_path.read_text() == before

    made = env.run("setup", "destination", "s3", "offsite", *flags, check=True)
    out = made.stdout
    assert "wrote destinations.offsite (s3)" in out and "no repository in the bucket yet" in out
    for printed in (
        '"s3:DeleteObject"', f'"arn:aws:s3:::{bucket}/master/*"', '"s3:prefix"',
        "removes its own lock file", "put-object-lock-configuration",
        "--object-lock-enabled-for-bucket", '"Mode":"COMPLIANCE","Days":30',
        '"NoncurrentDays":31',
    ):  # fmt: skip
        assert printed in out, (printed, out)
    assert SECRET_KEY not in out + made.stderr
    entry = yaml.safe_load(env.config_path.read_text())["destinations"][0]
    assert entry == {
        "name": "offsite", "kind": "s3", "endpoint": seaweedfs.endpoint,
        "bucket": f"{bucket}/master", **keys,
    }  # fmt: skip
    again = env.run("setup", "destination", "s3", "offsite", *flags, "--json", check=True)
    assert json.loads(again.stdout)["changes"] == []

    taken = env.run("snapshot", check=True)
    assert "destination offsite: 1 sets copied" in taken.stdout, taken.stdout
    known = env.run("setup", "destination", "s3", "offsite", *flags, "--json", check=True)
    assert json.loads(known.stdout)["repository_exists"] is True
    assert json.loads(known.stdout)["changes"] == []
