"""Setting keys in properties text in place (`update_properties_text`), read back by
`parse_properties` as Java's `Properties.load` would."""

from __future__ import annotations

from rmqkit.common.java_properties import escape_value, parse_properties, update_properties_text

FILE = """\
# broker-a, 2m-2s-sync
brokerClusterName=DefaultCluster
brokerName = broker-a
! an old comment: brokerPermission=2
brokerPermission : 6
namesrvAddr=127.0.0.1:9876;\\
    127.0.0.2:9876
mapedFileSizeCommitLog=1073741824

deleteWhen=04"""


def test_a_key_set_again_keeps_every_other_line() -> None:
    out = update_properties_text(FILE, {"brokerPermission": "4"})
    assert out == FILE.replace("brokerPermission : 6", "brokerPermission=4")
    assert parse_properties(out)["brokerPermission"] == "4"


def test_a_continued_line_is_replaced_whole_and_a_new_key_goes_at_the_end() -> None:
    out = update_properties_text(FILE, {"namesrvAddr": "10.0.0.1:9876", "fileReservedTime": "48"})
    lines = out.splitlines()
    assert "    127.0.0.2:9876" not in lines
    assert lines[5] == "namesrvAddr=10.0.0.1:9876"
    assert lines[-2:] == ["deleteWhen=04", "fileReservedTime=48"]  # a line break added first
    props = parse_properties(out)
    assert props["namesrvAddr"] == "10.0.0.1:9876" and props["fileReservedTime"] == "48"
    assert props["deleteWhen"] == "04" and props["brokerName"] == "broker-a"


def test_an_old_spelling_is_replaced_by_the_new_one() -> None:
    aliases = {"mapedFileSizeCommitLog": "mappedFileSizeCommitLog"}
    out = update_properties_text(
        FILE, {"mappedFileSizeCommitLog": "104857600"}, lambda k: aliases.get(k, k)
    )
    assert "mapedFileSizeCommitLog" not in out
    assert parse_properties(out)["mappedFileSizeCommitLog"] == "104857600"


def test_comments_are_never_taken_for_keys() -> None:
    out = update_properties_text(FILE, {"brokerPermission": "2"})
    assert "! an old comment: brokerPermission=2" in out.splitlines()


def test_values_that_need_escapes_read_back_unchanged() -> None:
    for value in (" leading blank", "back\\slash", "tab\there", "line\nbreak", "a=b:c #d", ""):
        out = update_properties_text("", {"k": value})
        assert parse_properties(out) == {"k": value}, (value, out)
        assert parse_properties(f"k={escape_value(value)}") == {"k": value}


def test_an_empty_file_gets_the_keys() -> None:
    assert update_properties_text("", {"a": "1", "b": "2"}) == "a=1\nb=2\n"
