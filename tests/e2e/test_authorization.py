"""Authorization holds on every path (issue 13, items 1, 2, 4 and 6), against real server
processes on both state backends, with the ownership hooks docs/hooks.md describes
(`tests/hooks_owner.py`): nobody reads, deletes or learns about what is not theirs.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests import support
from tests.e2e.hookutil import of_type, read_events, wait_until
from tests.support import TUS, head, patch

MODULE = "tests.hooks_owner"
ALICE = {"Authorization": "Bearer alice"}
BOB = {"Authorization": "Bearer bob"}


@pytest.fixture
def owned(make_server, hook_log):
    return make_server(hooks_module=MODULE)


def create(url: str, length: int | None, who: dict[str, str], **headers: str) -> str:
    hdrs = {**TUS, **who, **{name.replace("_", "-"): value for name, value in headers.items()}}
    if length is None:
        hdrs["Upload-Defer-Length"] = "1"
    else:
        hdrs["Upload-Length"] = str(length)
    response = requests.post(url, headers=hdrs, timeout=10)
    assert response.status_code == 201, (response.status_code, response.text)
    return response.headers["Location"]


def partial(url: str, data: bytes, who: dict[str, str], *, upload: bool = True, **headers: str) -> str:
    location = create(url, len(data), who, Upload_Concat="partial", **headers)
    if upload and data:
        assert patch(location, 0, data, **who).status_code == 204
    return location


def post_final(url: str, parts: list[str], who: dict[str, str]) -> requests.Response:
    return requests.post(url, headers={**TUS, **who, "Upload-Concat": "final;" + " ".join(parts)}, timeout=30)


def upload_files(server) -> set[str]:
    """The data files in the server's directory (the embedded state's database aside)."""
    return {path.name for path in support.upload_files(server.data_dir)}


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


# -- item 1: listing a part counts as reading it ------------------------------------


def test_a_final_listing_someone_elses_part_is_refused_and_creates_nothing(owned, hook_log: Path) -> None:
    alice_done = partial(owned.url, b"alice's secret", ALICE)
    alice_open = partial(owned.url, b"not yet there", ALICE, upload=False)
    bob_own = partial(owned.url, b"bob's", BOB)
    before = upload_files(owned)
    foreign_host = "https://uploads.example.com" + urlsplit(alice_done).path  # any host names the same upload
    for parts in ([alice_done], [alice_open], [bob_own, alice_done], [bob_own, foreign_host]):
        response = post_final(owned.url, parts, BOB)
        assert response.status_code == 403, (parts, response.status_code, response.text)
        assert response.text.startswith("ERR_FORBIDDEN: not your upload")
        assert "Location" not in response.headers
    assert upload_files(owned) == before  # nothing was created, copied or stored
    events = read_events(hook_log)
    assert not [e for e in of_type(events, "pre-create") if e["upload"]["is_final"]]
    # Authorize was asked about each listed part, with that part's record, for Bob's POST.
    asked = [e for e in of_type(events, "authorize") if e["upload_id"] and e["request"]["method"] == "POST"]
    assert {e["upload_id"] for e in asked} == {upload_id(alice_done), upload_id(alice_open), upload_id(bob_own)}
    assert all(e["upload"]["is_partial"] and e["request"]["method"] == "POST" for e in asked)

    # Alice may join her own parts; what she makes is hers alone (pre-create stamped it).
    patch(alice_open, 0, b"not yet there", **ALICE)
    response = post_final(owned.url, [alice_done, alice_open], ALICE)
    assert response.status_code == 201, response.text
    final = response.headers["Location"]
    assert requests.get(final, headers=ALICE, timeout=10).content == b"alice's secretnot yet there"
    assert requests.get(final, headers=BOB, timeout=10).status_code == 403


def test_an_unfinished_part_cannot_be_listed_by_a_stranger_to_read_it_later(owned) -> None:
    """The reviewer's variant: Bob lists Alice's unfinished part and waits for her to finish."""
    alice = partial(owned.url, b"0123456789", ALICE, upload=False)
    assert post_final(owned.url, [alice], BOB).status_code == 403
    assert patch(alice, 0, b"0123456789", **ALICE).status_code == 204
    assert requests.get(alice, headers=ALICE, timeout=10).content == b"0123456789"


def test_the_pre_create_event_of_a_final_carries_its_parts_and_length(owned, hook_log: Path) -> None:
    """Items 1 and 6: a hook can apply ownership and quotas to final uploads."""
    a = partial(owned.url, b"x" * 100, ALICE)
    b = partial(owned.url, b"y" * 50, ALICE)
    response = post_final(owned.url, [a, b, a], ALICE)
    assert response.status_code == 201, response.text
    final_id = upload_id(response.headers["Location"])
    event = [e for e in of_type(read_events(hook_log), "pre-create") if e["upload"]["is_final"]][0]
    assert event["upload"]["size"] == 250 and event["upload"]["size_is_deferred"] is False
    assert event["upload"]["partial_uploads"] == [upload_id(a), upload_id(b), upload_id(a)]
    assert event["upload"]["is_partial"] is False and event["upload"]["id"] == final_id
    assert head_as(response.headers["Location"], ALICE).headers["Upload-Length"] == "250"


def head_as(url: str, who: dict[str, str]) -> requests.Response:
    return requests.head(url, headers={**TUS, **who}, timeout=10)


def test_a_final_over_the_hooks_quota_is_refused_by_its_summed_length(owned) -> None:
    """Item 6: one small part listed many times is judged by the final's length."""
    small = partial(owned.url, b"z" * 512, ALICE)
    before = upload_files(owned)
    response = post_final(owned.url, [small] * 9, ALICE)  # 4608 bytes > the hook's quota of 4096
    assert response.status_code == 413 and response.text.startswith("ERR_UPLOAD_REJECTED: 4096 bytes at most")
    assert upload_files(owned) == before
    assert post_final(owned.url, [small] * 8, ALICE).status_code == 201  # repeating stays allowed (CC-06)


def test_a_final_over_max_size_is_413_before_anything_is_written(make_server) -> None:
    """Item 6 without hooks: the length, repeats included, counts against --max-size."""
    server = make_server(max_size=64 * 1024)
    part = create(server.url, 1024, {}, Upload_Concat="partial")
    assert patch(part, 0, b"p" * 1024).status_code == 204
    before = upload_files(server)
    response = post_final(server.url, [part] * 65, {})
    assert response.status_code == 413 and response.text.startswith("ERR_MAX_SIZE_EXCEEDED")
    assert upload_files(server) == before
    assert post_final(server.url, [part] * 64, {}).status_code == 201


def test_removing_parts_after_concat_asks_pre_terminate(make_server, hook_log: Path) -> None:
    """Removing a part is a termination: pre-terminate may keep it, post-terminate hears of it
    (listing it needed only the right to read it)."""
    server = make_server(hooks_module=MODULE, remove_parts_after_concat=True)
    kept = partial(server.url, b"kept ", ALICE, Upload_Metadata="keep")
    removed = partial(server.url, b"removed", ALICE)
    response = post_final(server.url, [kept, removed], ALICE)
    assert response.status_code == 201, response.text
    assert requests.get(response.headers["Location"], headers=ALICE, timeout=10).content == b"kept removed"
    assert head_as(kept, ALICE).status_code == 200  # pre-terminate refused its removal
    assert head_as(removed, ALICE).status_code == 403  # gone: the owner hook answers as for any unknown id
    terminated = wait_until(lambda: of_type(read_events(hook_log), "post-terminate"))
    assert [e["upload"]["id"] for e in terminated] == [upload_id(removed)]
    # Bob cannot make Alice's part go away by listing it in a final of his own.
    alice = partial(server.url, b"mine", ALICE)
    assert post_final(server.url, [alice], BOB).status_code == 403
    assert requests.get(alice, headers=ALICE, timeout=10).content == b"mine"


# -- item 2: pre-finish sees the assembled final ---------------------------------


def test_pre_finish_refuses_a_final_assembled_from_parts_that_pass_alone(owned, hook_log: Path) -> None:
    """The content gate cannot be evaded by splitting the content into two parts."""
    a = partial(owned.url, b"harmless EV", ALICE)
    b = partial(owned.url, b"IL content", ALICE)
    before = upload_files(owned)
    response = post_final(owned.url, [a, b], ALICE)
    assert response.status_code == 422, response.text
    assert response.text.startswith("ERR_FINISH_REJECTED: this content is not welcome")
    final = response.headers["Location"]  # it was created: it is dropped, never served
    for method in ("GET", "HEAD"):
        assert requests.request(method, final, headers={**TUS, **ALICE}, timeout=10).status_code == 410, method
    assert upload_files(owned) == before  # its assembled bytes were deleted
    events = read_events(hook_log)
    checked = of_type(events, "pre-finish", upload_id(final))
    assert len(checked) == 1 and checked[0]["upload"]["is_final"] and checked[0]["upload"]["offset"] == 21
    assert not of_type(events, "post-finish", upload_id(final))


def test_pre_finish_refuses_a_final_assembled_when_its_last_part_finishes(owned, hook_log: Path) -> None:
    """concatenation-unfinished: the same gate when the final is assembled in the background."""
    a = partial(owned.url, b"EV", ALICE)
    b = partial(owned.url, b"IL", ALICE, upload=False)
    response = post_final(owned.url, [a, b], ALICE)
    assert response.status_code == 201
    final = response.headers["Location"]
    assert "Upload-Offset" not in head_as(final, ALICE).headers
    assert patch(b, 0, b"IL", **ALICE).status_code == 204  # the part itself passes the gate
    assert wait_until(lambda: head_as(final, ALICE).status_code == 410)
    assert requests.get(final, headers=ALICE, timeout=10).status_code == 410
    assert upload_id(final) not in upload_files(owned)
    assert not of_type(read_events(hook_log), "post-finish", upload_id(final))
    # Content the gate lets through completes as before, and pre-finish saw it first.
    c = partial(owned.url, b"fine", ALICE, upload=False)
    good = post_final(owned.url, [a, c], ALICE).headers["Location"]
    assert patch(c, 0, b"fine", **ALICE).status_code == 204
    assert wait_until(lambda: "Upload-Offset" in head_as(good, ALICE).headers)
    assert requests.get(good, headers=ALICE, timeout=10).content == b"EVfine"
    events = read_events(hook_log)
    assert len(of_type(events, "pre-finish", upload_id(good))) == 1
    assert wait_until(lambda: of_type(read_events(hook_log), "post-finish", upload_id(good)))


# -- item 4: no existence oracle ----------------------------------------------------


def test_a_stranger_gets_the_same_answer_for_unknown_and_foreign_ids(owned, hook_log: Path) -> None:
    alice = create(owned.url, 10, ALICE)
    unknown = alice.rsplit("/", 1)[0] + "/0123456789abcdef0123456789abcdef"
    terminated = create(owned.url, 10, ALICE)
    assert requests.delete(terminated, headers={**TUS, **ALICE}, timeout=10).status_code == 204
    answers = {}
    for url in (alice, unknown, terminated):
        answers[url] = [
            (response.status_code, response.text)
            for response in (
                requests.head(url, headers={**TUS, **BOB}, timeout=10),
                requests.get(url, headers=BOB, timeout=10),
                patch(url, 0, b"x", **BOB),
                requests.delete(url, headers={**TUS, **BOB}, timeout=10),
                post_final(owned.url, [url], BOB),
            )
        ]
    assert answers[alice] == answers[unknown] == answers[terminated]
    assert {status for status, _ in answers[alice]} == {403}
    # The hook was asked about the unknown id, with no record, and knew which id it was.
    asked = [e for e in of_type(read_events(hook_log), "authorize") if e["upload_id"] == upload_id(unknown)]
    assert len(asked) == 5 and all(e["upload"] is None for e in asked)
    assert head_as(alice, ALICE).status_code == 200


def test_an_expired_upload_is_authorized_with_its_record(make_server, hook_log: Path) -> None:
    """A tombstone is the owner's: 410 for her, the stranger's 403 for anyone else."""
    server = make_server(hooks_module=MODULE, expire_after=1, sweep_interval=0.2)
    url = create(server.url, 10, ALICE)
    assert patch(url, 0, b"abc", **ALICE).status_code == 204
    deadline = time.monotonic() + 15
    while head_as(url, ALICE).status_code != 410 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert head_as(url, ALICE).status_code == 410
    assert head_as(url, BOB).status_code == 403
    assert head(url).status_code == 401  # no credentials
