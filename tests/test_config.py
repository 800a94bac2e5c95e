"""The config loader: every problem named with file, line and key; never a traceback."""

from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipper.core import config

MINIMAL = "repository:\n  url: /srv/repo\n"


def problems(text: str, source: str = "shipper.yml") -> list:
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text, source)
    return caught.value.problems


def test_minimal_config_gets_every_default_from_the_schema():
    cfg = config.parse(MINIMAL, "x.yml")
    assert cfg.role == "master"
    assert cfg.schedule == "*/15 * * * *"
    assert cfg.repository.password_file == "/etc/shipper/secret"
    assert cfg.databases.parallel == 2
    assert cfg.databases.mariadb is None
    assert "/etc/machine-id" in cfg.machine_specific
    assert cfg.retention.keep_within == "48h"


def test_nested_list_items_get_their_defaults():
    cfg = config.parse(MINIMAL + "databases:\n  mariadb:\n    - {port: 3307}\n", "x.yml")
    server = cfg.databases.mariadb[0]
    assert (server.port, server.user, server.databases, server.exclude) == (
        3307,
        "root",
        ["all"],
        [],
    )


def test_bad_schedule_names_file_line_and_key():
    text = MINIMAL + 'role: master\nschedule: "*/61 * * * *"\n'
    assert problems(text) == [
        "shipper.yml:4: schedule: '*/61 * * * *' is not a valid cron expression "
        "(five fields: minute hour day month weekday)"
    ]


def test_schedule_that_never_fires_is_refused():
    [problem] = problems(MINIMAL + 'schedule: "0 0 30 2 *"\n')
    assert problem == "shipper.yml:3: schedule: '0 0 30 2 *' never fires"


def test_unknown_key_suggests_the_closest_known_one():
    [problem] = problems("repository:\n  url: /r\n  pasword_file: /x\n")
    assert (
        problem
        == "shipper.yml:3: repository.pasword_file: unknown key; did you mean 'password_file'?"
    )


def test_unknown_key_in_a_list_item_is_found_on_its_line():
    text = MINIMAL + "databases:\n  postgresql:\n    - port: 5433\n      exlude: [a]\n"
    [problem] = problems(text)
    assert problem.startswith(
        "shipper.yml:6: databases.postgresql[0].exlude: unknown key; did you mean 'exclude'"
    )


def test_every_problem_is_reported_at_once():
    text = "role: boss\nrepository:\n  url: ''\npaths: [relative]\n"
    found = problems(text)
    assert len(found) == 3
    assert any(p.startswith("shipper.yml:1: role:") for p in found)
    assert any(
        p.startswith("shipper.yml:4: paths[0]: 'relative' must be an absolute path") for p in found
    )


def test_wrong_type_and_missing_required_key():
    found = problems("enabled: maybe\n")
    assert "shipper.yml:1: enabled: 'maybe' is not of type 'boolean'" in found
    assert any("'repository' is a required property" in p for p in found)


def test_invalid_yaml_names_the_line():
    [problem] = problems("repository:\n  url: [unclosed\n")
    assert problem.startswith("shipper.yml:")
    assert "not valid YAML" in problem


def test_top_level_must_be_a_mapping():
    [problem] = problems("- a\n- b\n")
    assert "must be a mapping" in problem


def test_generated_config_is_valid_and_commented():
    text = config.generate()
    assert "# When to take a set, in cron syntax" in text
    cfg = config.parse(text, "generated.yml")
    assert cfg.schedule == "*/15 * * * *"


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(config.ConfigError) as caught:
        config.load(str(tmp_path / "nope.yml"))
    assert "shipper config generate" in str(caught.value)


def test_world_readable_secret_is_a_problem(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("pw\n")
    secret.chmod(0o644)
    cfg = config.parse(f"repository: {{url: /r, password_file: {secret}}}\n", "x.yml")
    [problem] = config.secret_problems(cfg)
    assert "readable by others" in problem and f"chmod 600 {secret}" in problem
    secret.chmod(0o600)
    assert config.secret_problems(cfg) == []


yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(string.printable, max_size=12),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["url", "paths", "role", "schedule", "x", "databases", "mariadb"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
top_keys = st.sampled_from(
    [
        "repository",
        "paths",
        "role",
        "schedule",
        "databases",
        "hooks",
        "notify",
        "retention",
        "bogus",
        "exclude",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(top_keys, yaml_values, max_size=6))
def test_fuzzed_documents_raise_only_config_errors(document):
    text = yaml.safe_dump(document)
    try:
        config.parse(text, "fuzz.yml")
    except config.ConfigError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_text_raises_only_config_errors(text):
    try:
        config.parse(text, "fuzz.yml")
    except config.ConfigError:
        pass


def test_dump_options_are_kept_per_server():
    text = MINIMAL + (
        "databases:\n  mariadb:\n    - dump_options: [--skip-dump-date, --where=id>0]\n"
        "  postgresql:\n    - {}\n"
    )
    cfg = config.parse(text, "x.yml")
    assert cfg.databases.mariadb[0].dump_options == ["--skip-dump-date", "--where=id>0"]
    assert cfg.databases.postgresql[0].dump_options == []


def test_dump_options_that_break_the_stream_or_credentials_are_refused():
    text = MINIMAL + (
        "databases:\n"
        "  mariadb:\n"
        "    - dump_options:\n"
        "        - --result-file=/tmp/x\n"
        "        - -r\n"
        "        - --pass=secret\n"
        "        - --loose-skip-comments\n"
        "        - --comments=0\n"
        "        - --order-by-size\n"
        "  postgresql:\n"
        "    - dump_options: [--no-comments, --file=/tmp/y, --format=custom, --where]\n"
    )
    found = problems(text)
    assert found[0] == (
        "shipper.yml:6: databases.mariadb[0].dump_options[0]: '--result-file=/tmp/x' is "
        "refused: the dump must go to stdout as SQL that shipper loads and checks for "
        "completeness"
    )
    assert found[1].startswith("shipper.yml:7: databases.mariadb[0].dump_options[1]: '-r'")
    assert "long form" in found[1]
    assert "shipper.yml:8:" in found[2] and "password_file" in found[2]
    assert "shipper.yml:9:" in found[3] and "Dump completed" in found[3]
    assert "shipper.yml:10:" in found[4] and "Dump completed" in found[4]
    assert "shipper.yml:13: databases.postgresql[0].dump_options[1]: '--file=/tmp/y'" in found[5]
    assert "databases.postgresql[0].dump_options[2]: '--format=custom'" in found[6]
    assert len(found) == 7  # --order-by-size, --no-comments and pg's --where are fine
