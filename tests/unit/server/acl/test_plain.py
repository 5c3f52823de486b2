"""plain_acl.yml loading (RocketMQ's `PlainPermissionManager`): accounts, defaults, errors, the
file layout of 4.9.3+, and `AclFiles` re-reading on change."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.server.acl.permission import DENY, PUB, SUB
from rmqkit.server.acl.plain import AclFiles, acl_files, acl_folder, load_acl

# The accounts and white list of RocketMQ's distribution/conf/plain_acl.yml (4.9.8 / 5.3.0).
EXAMPLE = """\
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*

accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      # the group should convert to retry topic
      - groupA=DENY
      - groupB=PUB|SUB
      - groupC=SUB

  - accessKey: rocketmq2
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.*
    # if it is admin, it could access all resources
    admin: true
"""

ACL_LOG = "rmqkit.acl"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _account(ak: str, sk: str = "secret-000", extra: str = "") -> str:
    return f"accounts:\n  - accessKey: {ak}\n    secretKey: {sk}\n{extra}"


def _rewrite(path: Path, text: str) -> None:
    """Write `text` and move the mtime a second on, so a same-nanosecond mtime cannot hide it."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    _write(path, text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, max(st.st_mtime_ns, before) + 1_000_000_000))


# load_acl ------------------------------------------------------------------------------------


def test_rocketmq_example_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain_acl.yml", EXAMPLE)
    config = load_acl([path])

    assert config.files == [path]
    assert len(config.global_white) == 2
    assert config.white_listed("10.10.103.5")
    assert config.white_listed("192.168.0.200")
    assert not config.white_listed("192.168.1.5")
    assert not config.white_listed("10.10.104.5")
    assert set(config.accounts) == {"RocketMQ", "rocketmq2"}

    first = config.accounts["RocketMQ"]
    assert first.access_key == "RocketMQ"
    assert first.secret_key == "12345678"  # a YAML integer, read as its text
    assert first.admin is False
    assert first.default_topic_perm == DENY
    assert first.default_group_perm == SUB
    assert first.perms == {
        "topicA": DENY,
        "topicB": PUB | SUB,
        "topicC": SUB,
        "%RETRY%groupA": DENY,
        "%RETRY%groupB": PUB | SUB,
        "%RETRY%groupC": SUB,
    }
    assert not first.white("192.168.1.5")
    assert not first.white("127.0.0.1")

    second = config.accounts["rocketmq2"]
    assert second.secret_key == "12345678"
    assert second.admin is True
    assert second.white("192.168.1.5")
    assert not second.white("192.168.2.5")
    assert second.perms == {}
    assert (second.default_topic_perm, second.default_group_perm) == (DENY, DENY)


def test_account_repr_hides_the_secret(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain_acl.yml", _account("visibleKey", "hush-secret"))
    text = repr(load_acl([path]).accounts["visibleKey"])
    assert "visibleKey" in text
    assert "hush-secret" not in text


def test_defaults_when_keys_are_missing(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain_acl.yml", _account("plainKey1"))
    account = load_acl([path]).accounts["plainKey1"]
    assert account.admin is False
    assert account.default_topic_perm == DENY
    assert account.default_group_perm == DENY
    assert account.perms == {}
    assert not account.white("127.0.0.1")
    assert not account.white("::1")


@pytest.mark.parametrize(
    ("value", "admin"),
    [("true", True), ("'true'", True), ("'TRUE'", True), ("false", False), ("'no'", False),
     ("", False)],
)  # fmt: skip
def test_admin_spellings(tmp_path: Path, value: str, admin: bool) -> None:
    path = _write(tmp_path / "plain_acl.yml", _account("plainKey1", extra=f"    admin: {value}\n"))
    assert load_acl([path]).accounts["plainKey1"].admin is admin


def test_unknown_perm_spelling_reads_as_deny_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = (
        "    defaultTopicPerm: ALL\n    defaultGroupPerm: SUB\n    topicPerms: [t1=pub, t2=PUB]\n"
    )
    path = _write(tmp_path / "plain_acl.yml", _account("plainKey1", extra=extra))
    with caplog.at_level(logging.WARNING, logger=ACL_LOG):
        account = load_acl([path]).accounts["plainKey1"]
    assert account.default_topic_perm == DENY
    assert account.default_group_perm == SUB
    assert account.perms == {"t1": DENY, "t2": PUB}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any("'ALL'" in w and "defaultTopicPerm" in w for w in warnings)
    assert any("'pub'" in w and "t1=pub" in w for w in warnings)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("accounts: [\n  - {accessKey: x\n", "cannot read ACL file"),
        ("- one\n- two\n", "expected a mapping at the top"),
        ("just a string\n", "expected a mapping at the top"),
        ("accounts:\n  - just-a-string\n", "an account is a mapping"),
        (_account("short", "secret-000"), "longer than 6"),
        (_account("abcdef", "secret-000"), "longer than 6"),  # 6 is not enough
        (_account("accessKey1", "123456"), "longer than 6"),
        ("accounts:\n  - accessKey: accessKey1\n", "longer than 6"),
        ("accounts:\n  - secretKey: secret-000\n", "longer than 6"),
        (_account("accessKey1", extra="    topicPerms: [topicA]\n"), "'<topic>=PERM'"),
        (_account("accessKey1", extra="    topicPerms: [a=PUB=SUB]\n"), "'<topic>=PERM'"),
        (_account("accessKey1", extra="    topicPerms: ['=PUB']\n"), "'<topic>=PERM'"),
        (_account("accessKey1", extra="    groupPerms: [groupA]\n"), "'<group>=PERM'"),
        (_account("accessKey1", extra="    topicPerms: topicA=PUB\n"), "expected a list"),
        (_account("accessKey1", extra="    whiteRemoteAddress: 10.0.0.300\n"), "10.0.0.300"),
        ("globalWhiteRemoteAddresses: ['10.0.*']\n", "globalWhiteRemoteAddresses[0]"),
    ],
)
def test_errors_name_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = _write(tmp_path / "team-acl.yml", text)
    with pytest.raises(ConfigurationError) as info:
        load_acl([path])
    message = str(info.value)
    assert str(path) in message
    assert fragment in message


def test_seven_character_keys_are_enough(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain_acl.yml", _account("abcdefg", "1234567"))
    assert load_acl([path]).accounts["abcdefg"].secret_key == "1234567"


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "plain_acl.yml"
    path.write_bytes(b"accounts:\n  - accessKey: \xff\xfe\n")
    with pytest.raises(ConfigurationError, match=r"plain_acl\.yml"):
        load_acl([path])


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"gone\.yml"):
        load_acl([tmp_path / "gone.yml"])


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_an_empty_file_adds_nothing(tmp_path: Path, text: str) -> None:
    empty = _write(tmp_path / "plain_acl.yml", text)
    other = _write(tmp_path / "acl" / "a.yml", _account("accessKey1"))
    config = load_acl([empty, other])
    assert config.global_white == []
    assert set(config.accounts) == {"accessKey1"}
    assert config.files == [empty, other]


def test_duplicate_access_key_first_file_wins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _write(
        tmp_path / "plain_acl.yml",
        "globalWhiteRemoteAddresses: [10.0.0.1]\n" + _account("sharedKey1", "first-secret"),
    )
    second = _write(
        tmp_path / "acl" / "team.yml",
        "globalWhiteRemoteAddresses: [10.0.0.2]\n"
        + _account("sharedKey1", "second-secret")
        + "  - accessKey: otherKey1\n    secretKey: other-secret\n",
    )
    with caplog.at_level(logging.WARNING, logger=ACL_LOG):
        config = load_acl([first, second])
    assert config.accounts["sharedKey1"].secret_key == "first-secret"
    assert config.accounts["otherKey1"].secret_key == "other-secret"
    assert config.white_listed("10.0.0.1")
    assert config.white_listed("10.0.0.2")  # white lists of all files add up
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "sharedKey1" in warnings[0]
    assert "team.yml" in warnings[0]


# acl_files / acl_folder ----------------------------------------------------------------------


def test_acl_files_order_and_suffixes(tmp_path: Path) -> None:
    plain = _write(tmp_path / "plain_acl.yml", "")
    b = _write(tmp_path / "acl" / "b.yml", "")
    a = _write(tmp_path / "acl" / "a.yaml", "")
    nested = _write(tmp_path / "acl" / "sub" / "c.yml", "")
    _write(tmp_path / "acl" / "notes.txt", "")
    _write(tmp_path / "acl" / "old.yml.bak", "")
    _write(tmp_path / "acl" / "upper.YML", "")
    _write(tmp_path / "other.yml", "")  # beside plain_acl.yml, not under acl/
    (tmp_path / "acl" / "folder.yml").mkdir()
    assert acl_files(tmp_path) == [plain, a, b, nested]


def test_acl_files_without_plain_acl_or_acl_folder(tmp_path: Path) -> None:
    assert acl_files(tmp_path) == []
    only = _write(tmp_path / "acl" / "x.yml", "")
    assert acl_files(tmp_path) == [only]
    (tmp_path / "elsewhere").mkdir()
    plain = _write(tmp_path / "elsewhere" / "plain_acl.yml", "")
    assert acl_files(tmp_path / "elsewhere") == [plain]


def test_acl_folder(tmp_path: Path) -> None:
    home, conf = tmp_path / "home", tmp_path / "etc"
    assert acl_folder(home, conf) == home / "conf"
    assert acl_folder(home, None) == home / "conf"
    assert acl_folder(None, conf) == conf
    assert acl_folder(None, None) == Path(".")


# AclFiles ------------------------------------------------------------------------------------


def test_acl_files_without_any_file_names_plain_acl_yml(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        AclFiles(tmp_path)
    assert str(tmp_path / "plain_acl.yml") in str(info.value)


def test_acl_files_with_only_the_acl_folder(tmp_path: Path) -> None:
    _write(tmp_path / "acl" / "team.yaml", _account("teamKey01"))
    assert set(AclFiles(tmp_path).config.accounts) == {"teamKey01"}


def test_acl_files_refuses_a_broken_file_at_start(tmp_path: Path) -> None:
    _write(tmp_path / "plain_acl.yml", _account("short"))
    with pytest.raises(ConfigurationError, match="longer than 6"):
        AclFiles(tmp_path)


def test_reload_only_when_changed(tmp_path: Path) -> None:
    plain = _write(tmp_path / "plain_acl.yml", _account("firstKey1"))
    files = AclFiles(tmp_path)
    assert files.folder == tmp_path
    assert set(files.config.accounts) == {"firstKey1"}
    assert files.reload_if_changed() is False

    _rewrite(plain, _account("secondKey1"))
    assert files.reload_if_changed() is True
    assert set(files.config.accounts) == {"secondKey1"}
    assert files.reload_if_changed() is False


def test_reload_after_a_touch_with_the_same_content(tmp_path: Path) -> None:
    plain = _write(tmp_path / "plain_acl.yml", _account("firstKey1"))
    files = AclFiles(tmp_path)
    before = files.config
    _rewrite(plain, _account("firstKey1"))
    assert files.reload_if_changed() is True
    assert files.config is not before
    assert set(files.config.accounts) == {"firstKey1"}


def test_reload_picks_up_a_new_and_a_removed_file(tmp_path: Path) -> None:
    _write(tmp_path / "plain_acl.yml", _account("firstKey1"))
    files = AclFiles(tmp_path)
    team = tmp_path / "acl" / "deep" / "team.yml"
    _rewrite(team, _account("teamKey01"))
    assert files.reload_if_changed() is True
    assert set(files.config.accounts) == {"firstKey1", "teamKey01"}
    assert files.config.files == [tmp_path / "plain_acl.yml", team]

    team.unlink()
    assert files.reload_if_changed() is True
    assert set(files.config.accounts) == {"firstKey1"}


def test_a_broken_change_keeps_the_old_accounts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = _write(tmp_path / "plain_acl.yml", _account("firstKey1"))
    files = AclFiles(tmp_path)
    old = files.config

    with caplog.at_level(logging.ERROR, logger=ACL_LOG):
        _rewrite(plain, "accounts: [\n")
        assert files.reload_if_changed() is False
    assert files.config is old
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "previous accounts stay" in errors[0]
    assert "plain_acl.yml" in errors[0]
    assert files.reload_if_changed() is False  # nothing new since: no second error
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1

    _rewrite(plain, _account("fixedKey01"))
    assert files.reload_if_changed() is True
    assert set(files.config.accounts) == {"fixedKey01"}


def test_removing_every_file_keeps_the_old_accounts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = _write(tmp_path / "plain_acl.yml", _account("firstKey1"))
    files = AclFiles(tmp_path)
    plain.unlink()
    with caplog.at_level(logging.ERROR, logger=ACL_LOG):
        assert files.reload_if_changed() is False
    assert set(files.config.accounts) == {"firstKey1"}
    assert any("is gone" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("key", ["globalWhiteRemoteAddresses", "accounts"])
def test_a_scalar_where_a_list_belongs_is_named(tmp_path: Path, key: str) -> None:
    path = _write(tmp_path / "plain_acl.yml", f"{key}: 10.0.0.*\n")
    with pytest.raises(ConfigurationError, match=f"{key} must be a list"):
        load_acl([path])
