"""Destinations against real parts: rest-server as the slave, SeaweedFS as the S3 store.

A set goes to the slave (repository) and is copied whole to the bucket; a
bucket that is down is caught up on the next run; a bare machine that knows
only the bucket restores the files byte for byte.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List

from tests.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedFS
from tests.shipperenv import TOOLS, VENV_BIN, ShipperEnv, free_port, tree_digest, write_secret


def offsite(store: SeaweedFS, folder: Path, bucket: str, endpoint: str = "") -> Dict[str, Any]:
    return {
        "name": "offsite",
        "kind": "s3",
        "endpoint": endpoint or store.endpoint,
        "bucket": bucket,
        "region": "us-east-1",
        **store.credential_files(folder),
    }


def set_ids(env: ShipperEnv, destination: str = "primary") -> List[str]:
    result = env.run("sets", "--json", "--destination", destination, check=True)
    return [s["id"] for s in json.loads(result.stdout) if s["status"] == "complete"]


def test_set_reaches_slave_and_bucket_and_a_bare_machine_restores_it(
    shipper_env: ShipperEnv, rest_server: Any, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    env = shipper_env
    env.make_dataset(files=60, mib=2)
    bucket = seaweedfs.new_bucket()
    env.write_config(
        repository={"url": rest_server.url + "master/"},
        destinations=[offsite(seaweedfs, env.base / "creds", bucket)],
    )
    assert env.run("init").returncode == 0
    started = time.monotonic()
    first = env.run("snapshot", check=True)
    assert "destination offsite: 1 sets copied" in first.stdout, first.stdout
    print(f"set to slave + bucket: {time.monotonic() - started:.1f}s")
    assert set_ids(env, "offsite") == set_ids(env) and len(set_ids(env)) == 1

    # The bare machine: a fresh config and state that know only the bucket and the password.
    bare = tmp_path / "bare"
    bare_env = ShipperEnv(bare)
    bare_env.write_config(
        repository={"url": str(bare / "no-such-repo"), "password_file": str(env.password_file)},
        destinations=[offsite(seaweedfs, bare / "creds", bucket)],
    )
    target = bare / "restored"
    restored = bare_env.run(
        "restore", "latest", "--destination", "offsite", "--target", str(target)
    )
    assert restored.returncode == 0, restored.stderr
    assert tree_digest(target / env.src.relative_to("/")) == tree_digest(env.src)


def test_bucket_down_for_a_run_is_caught_up(
    shipper_env: ShipperEnv, rest_server: Any, seaweedfs: SeaweedFS
) -> None:
    env = shipper_env
    env.make_dataset(files=30, mib=1)
    bucket = seaweedfs.new_bucket()
    creds = env.base / "creds"
    down = offsite(seaweedfs, creds, bucket, endpoint=f"http://127.0.0.1:{free_port()}")
    env.write_config(repository={"url": rest_server.url + "master/"}, destinations=[down])
    assert env.run("init").returncode == 0
    missed = env.run("snapshot")
    assert missed.returncode == 0, missed.stderr
    assert "destination offsite: not copied: cannot reach the object store" in missed.stderr
    said = [line for line in missed.stderr.splitlines() if "destination offsite: not" in line]
    assert len(said) == 1 and said[0].endswith("the next run catches it up"), missed.stderr
    stale = json.loads(env.run("status", "--json").stdout)
    assert any("destination offsite: cannot reach" in p["text"] for p in stale["problems"])

    env.write_config(destinations=[offsite(seaweedfs, creds, bucket)])
    env.mutate_dataset()
    back = env.run("snapshot", check=True)
    assert "destination offsite: 2 sets copied" in back.stdout, back.stdout
    assert set_ids(env, "offsite") == set_ids(env) and len(set_ids(env)) == 2
    shown = env.run("status")
    assert "age_offsite=" in shown.stdout.splitlines()[0], shown.stdout
    views = json.loads(env.run("status", "--json").stdout)["destinations"]
    assert [(v["name"], v["newest"], v["error"]) for v in views] == [
        ("offsite", set_ids(env)[0], None)
    ]


RESTIC_COMMANDS = {"backup", "cat", "copy", "forget", "init", "snapshots", "unlock", "version"}


def counting_snapshot(env: ShipperEnv, log: Path) -> Dict[str, Any]:
    """`shipper snapshot --json` through a restic wrapper that logs each process's command."""
    wrapper = env.base / "restic-counting"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {TOOLS / "restic"} "$@"\n')
    wrapper.chmod(0o755)
    log.write_text("")
    result = subprocess.run(
        [str(VENV_BIN / "shipper"), "snapshot", "--json"],
        env={**env.env(), "SHIPPER_RESTIC": str(wrapper)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    commands = []
    for line in log.read_text().splitlines():
        commands += [next(word for word in line.split() if word in RESTIC_COMMANDS)]
    return {**json.loads(result.stdout), "commands": commands}


def test_one_new_set_is_one_restic_copy_and_a_record_that_lies_is_corrected(
    shipper_env: ShipperEnv,
) -> None:
    """After a good copy, the next set goes with one `restic copy` and no listing; a
    destination emptied behind shipper's back is found out and refilled."""
    env = shipper_env
    spare = env.base / "spare"
    env.make_dataset(files=20, mib=1)
    env.write_config(destinations=[{"name": "spare", "kind": "local", "url": str(spare)}])
    env.run("init", check=True)
    log = env.base / "restic.log"
    first = counting_snapshot(env, log)
    # The source and the new destination are listed; the gauges after the copy need no listing.
    assert first["destinations"][0]["listed"] and first["commands"].count("snapshots") == 2
    env.mutate_dataset()
    second = counting_snapshot(env, log)
    (copied,) = second["destinations"]
    assert (copied["listed"], copied["copied"], copied["error"]) == (
        False,
        [second["set_id"]],
        None,
    )
    # One copy and no listing at all (the gauges take the copy's word for the newest set).
    assert second["commands"].count("copy") == 1 and second["commands"].count("snapshots") == 0
    assert set_ids(env, "spare") == set_ids(env) and len(set_ids(env)) == 2

    listed = json.loads(env.restic("snapshots", "--json", repo=str(spare)).stdout)
    env.restic("forget", *[snap["id"] for snap in listed], repo=str(spare))
    assert set_ids(env, "spare") == []
    third = counting_snapshot(env, log)
    (refilled,) = third["destinations"]
    assert refilled["listed"] and refilled["error"] is None, third
    assert sorted(refilled["copied"]) == sorted(set_ids(env)) and len(set_ids(env)) == 3
    assert set_ids(env, "spare") == set_ids(env)
    fourth = counting_snapshot(env, log)
    assert not fourth["destinations"][0]["listed"] and set_ids(env, "spare") == set_ids(env)


def test_unknown_destination_is_one_line(shipper_env: ShipperEnv) -> None:
    write_secret(shipper_env.base / "x")
    result = shipper_env.run("sets", "--destination", "nowhere")
    assert result.returncode != 0
    assert "no destination named 'nowhere'" in result.stderr


def test_a_slave_pulls_sets_to_the_bucket_from_its_local_copy(
    shipper_env: ShipperEnv, seaweedfs: SeaweedFS
) -> None:
    env = shipper_env
    env.make_dataset(files=10, mib=1)
    env.run("init", check=True)
    env.run("snapshot", check=True)
    bucket = seaweedfs.new_bucket()
    env.write_config(
        role="slave",
        repository={"local_path": str(env.repo)},
        destinations=[offsite(seaweedfs, env.base / "creds", bucket)],
    )
    pulled = env.run("copy")
    assert pulled.returncode == 0 and "1 sets copied" in pulled.stdout, pulled.stderr
    assert set_ids(env, "offsite") == set_ids(env)


def test_wrong_s3_credentials_are_one_line_without_the_secret(
    shipper_env: ShipperEnv, seaweedfs: SeaweedFS
) -> None:
    env = shipper_env
    wrong = offsite(seaweedfs, env.base / "creds", seaweedfs.new_bucket())
    write_secret(Path(wrong["secret_access_key_file"]), "not-the-secret-4711")
    env.write_config(destinations=[wrong])
    result = env.run("sets", "--destination", "offsite", timeout=120)
    assert result.returncode == 1, result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "object store at s3:" in result.stderr and "refused the credentials" in result.stderr
    assert "not-the-secret-4711" not in result.stdout + result.stderr


def test_a_set_copied_into_an_object_locked_bucket_survives_forget_and_prune(
    shipper_env: ShipperEnv, rest_server: Any, seaweedfs: SeaweedFS
) -> None:
    """Immutability comes from the bucket's default COMPLIANCE retention, not from restic."""
    env = shipper_env
    bucket = seaweedfs.new_bucket()
    seaweedfs.create_locked_bucket(bucket, days=1)
    env.make_dataset(files=10, mib=1)
    env.write_config(
        repository={"url": rest_server.url + "master/"},
        destinations=[offsite(seaweedfs, env.base / "creds", bucket)],
    )
    env.run("init", check=True)
    env.run("snapshot", check=True)
    before = seaweedfs.object_versions(bucket)
    repo = f"s3:{seaweedfs.endpoint}/{bucket}"
    plain = {**env.env(), "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    base = [str(TOOLS / "restic"), "-r", repo, "--password-file", str(env.password_file)]
    listed = subprocess.run(
        [*base, "snapshots", "--json"], env=plain, capture_output=True, timeout=60
    )
    ids = [snap["id"] for snap in json.loads(listed.stdout)]
    forgot = subprocess.run(
        [*base, "forget", "--prune", *ids], env=plain, capture_output=True, timeout=120
    )
    assert ids and forgot.returncode == 0, forgot.stderr
    assert before > 0 and seaweedfs.object_versions(bucket) >= before, (
        "a locked version disappeared"
    )


def test_a_local_destination_whose_disk_is_not_mounted_fails_at_once_and_is_never_refilled(
    shipper_env: ShipperEnv, tmp_path: Path
) -> None:
    """A USB disk's mount point: copied to once, then unmounted (the folder gone, a file in
    its place, the bare mount point): each run says so at once (not after network_timeout),
    no new repository lands below the mount point, and the disk mounted again gets both sets."""
    env = shipper_env
    disk = tmp_path / "mnt" / "usb"
    disk.parent.mkdir()
    (env.src / "a").write_text("a\n")
    env.write_config(destinations=[{"name": "usb", "kind": "local", "url": str(disk)}])
    env.run("init", check=True)
    env.run("snapshot", check=True)
    first = set_ids(env, "usb")
    assert len(first) == 1
    unmounted = tmp_path / "usb-unmounted"
    disk.rename(unmounted)

    def run_says(*words: str) -> None:
        (env.src / "a").write_text(f"a {time.monotonic()}\n")
        started = time.monotonic()
        done = env.run("snapshot")
        assert done.returncode == 0, done.stderr  # the set itself is complete
        assert time.monotonic() - started < 30, "waited out network_timeout (180 s)"
        line = next(x for x in done.stderr.splitlines() if "destination usb" in x)
        assert all(word in line for word in words), line

    disk.mkdir()  # the bare mount point
    run_says("holds no repository", "is its disk mounted?", "copies/usb.json")
    assert list(disk.iterdir()) == [], "a new repository was made below the mount point"
    disk.rmdir()
    disk.write_text("not a folder\n")
    run_says("is not a folder", "destinations.usb.url")
    disk.unlink()
    disk.parent.rmdir()
    run_says("is missing and so is", "is its disk mounted?")

    disk.parent.mkdir()
    unmounted.rename(disk)
    done = env.run("snapshot", check=True)
    assert "destination usb: 4 sets copied" in done.stdout, done.stdout
    assert set_ids(env, "usb") == set_ids(env)
