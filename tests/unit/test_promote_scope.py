"""Promote's in-place routing and plan, from the records alone (no restic)."""

from __future__ import annotations

from shipper.core.manifest import Dump
from shipper.slave.promote import report
from shipper.slave.promote.model import Plan
from shipper.slave.promote.scope import Scope, from_root, route_removals, under_root


def test_a_protected_path_inside_a_restored_one_is_routed_around() -> None:
    scope = Scope.make(["/etc", "/srv/app"], ["/etc/sysconfig/network-scripts", "/var/lib"])
    assert scope.paths == ["/etc", "/srv/app"]
    assert scope.protected == ["/etc/sysconfig/network-scripts"]
    assert scope.route == ["/etc", "/etc/sysconfig"]
    children = {"/etc": ["hosts", "sysconfig"], "/etc/sysconfig": ["network-scripts", "selinux"]}
    assert scope.includes(children) == ["/etc/hosts", "/etc/sysconfig/selinux", "/srv/app"]
    assert scope.keeps("/etc/sysconfig/network-scripts/ifcfg-eth0")
    assert not scope.keeps("/etc/hosts")


def test_a_path_inside_a_protected_one_is_not_restored() -> None:
    scope = Scope.make(["/etc/machine-id", "/srv"], ["/etc/machine-id"])
    assert scope.whole == ["/etc/machine-id"] and scope.paths == ["/srv"]


def test_removals_stay_inside_the_route_and_spare_the_protected(tmp_path) -> None:
    root = str(tmp_path)
    (tmp_path / "etc" / "sysconfig" / "network-scripts").mkdir(parents=True)
    (tmp_path / "etc" / "stale.conf").write_text("x")
    (tmp_path / "etc" / "hosts").write_text("x")
    scope = Scope.make(["/etc"], ["/etc/sysconfig/network-scripts"])
    # The set has /etc/hosts and the folder; stale.conf is not in it.
    removed = route_removals(root, scope, {"/etc": ["hosts", "sysconfig"], "/etc/sysconfig": []})
    assert removed == ["/etc/stale.conf"]
    assert under_root(root, "/etc") == f"{root}/etc" and from_root(root, f"{root}/etc") == "/etc"


def test_the_plan_reads_in_step_order() -> None:
    scope = Scope.make(["/srv/app"], [])
    dump = Dump("mariadb:shop", "mariadb", "shop", "bbb", "mariadb-shop.sql", 2048, None, "10.11")
    plan = Plan(
        set_id="20261125T163000Z",
        status="complete",
        time="2026-11-25T16:30:00+00:00",
        host="master1",
        root="/",
        files_snapshot="fff",
        scope=scope,
        includes=["/srv/app"],
        children={},
        in_the_way=[],
        rewrite=[],
        changes=None,
        databases=[dump],
        skipped_parts={},
        hooks=["50-services"],
        steps=["receiver", "files", "database:mariadb:shop", "hook:50-services", "role"],
        done=["receiver"],
        resumed=True,
    )
    lines = report.plan_lines(plan)
    assert lines[1].startswith("  resuming an interrupted promote; already done: receiver")
    assert lines[2].startswith("  - (done) stop the receiver")
    assert "replace database shop (mariadb, 2.0 KiB dump)" in "\n".join(lines)
    assert "children" not in plan.to_json()


def test_a_folder_whose_children_are_unchanged_is_not_in_the_way(tmp_path) -> None:
    """restic lists such a folder as restored (metadata) and its files as unchanged."""
    from shipper.slave.promote.scope import type_changes

    (tmp_path / "srv" / "kept").mkdir(parents=True)
    (tmp_path / "srv" / "kept" / "a").write_text("same")
    (tmp_path / "srv" / "link").mkdir()
    (tmp_path / "srv" / "link" / "b").write_text("a folder on the slave, a link in the set")
    items = [
        {"action": "restored", "item": "/srv/kept"},
        {"action": "unchanged", "item": "/srv/kept/a"},
        {"action": "restored", "item": "/srv/link"},
    ]
    scope = Scope.make(["/srv"], [])
    assert type_changes(str(tmp_path), scope, items) == ["/srv/link"]
