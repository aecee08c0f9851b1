"""Jellyfin listings page in an explicit order, without a total count, and lose or repeat
no item when the library changes between two pages (the fake Jellyfin sorts as asked
and refuses a page asked without a sort)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from support.fake_players import FakeJellyfin, JellyfinItem, Recorded

from metarr_sync.config import Mapping, PlayerConfig, SyncConfig
from metarr_sync.players import jellyfin
from metarr_sync.players.jellyfin import JellyfinPlayer

MOVIES = "/media/movies"


@pytest.fixture
def fake() -> Iterator[FakeJellyfin]:
    with FakeJellyfin() as server:
        yield server


def player_for(fake: FakeJellyfin) -> JellyfinPlayer:
    config = PlayerConfig(name="den", type="jellyfin", url=fake.url,
                          mappings=[Mapping(MOVIES, MOVIES)])
    config.token_value = fake.token
    return JellyfinPlayer(config, SyncConfig())


def put_movies(fake: FakeJellyfin, names: list[str]) -> list[str]:
    """Movies the server already has; their ids."""
    library = fake.libraries[0].item_id
    ids = []
    with fake.lock:
        for name in names:
            item_id = f"{len(fake.items) + 1:032x}"
            fake.items[item_id] = JellyfinItem(item_id, "Movie",
                                               f"{MOVIES}/{name}/{name}.mkv", library)
            ids.append(item_id)
    return ids


def listed(player: JellyfinPlayer) -> list[str]:
    index = player.index(player.libraries()[0])
    return [index.ids[n] for n in range(len(index))]


def pages(fake: FakeJellyfin) -> list[Recorded]:
    return [r for r in fake.received("GET /Items") if r.param("limit") is not None]


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jellyfin, "PAGE_SIZE", 10)
    monkeypatch.setattr(jellyfin, "LISTING_OVERLAP", 3)


def test_every_page_asks_for_the_same_explicit_order_and_no_count(fake, small_pages):
    ids = put_movies(fake, [f"Film {n:03d}" for n in range(25)])
    assert sorted(listed(player_for(fake))) == sorted(ids)
    sent = pages(fake)
    assert [r.param("startIndex") for r in sent] == ["0", "7", "14", "21"]  # 4 < 10: ends
    for request in sent:
        assert request.values("sortBy") == {"SortName", "Name", "ProductionYear",
                                            "DateCreated"}
        assert request.query["sortBy"] == ["SortName", "Name", "ProductionYear",
                                           "DateCreated"]  # in this order
        assert request.param("sortOrder") == "Ascending"
        assert request.param("enableTotalRecordCount") == "false"


def test_the_fake_refuses_a_page_without_a_sort_and_counts_only_when_asked(fake):
    put_movies(fake, ["Heat", "Alien"])
    auth = {"Authorization": f'MediaBrowser Client="t", Device="d", DeviceId="1", '
                             f'Version="1", Token="{fake.token}"'}
    base = {"parentId": fake.libraries[0].item_id, "recursive": "true", "limit": "1"}
    unsorted = requests.get(fake.url + "/Items", headers=auth, params=base, timeout=3)
    assert unsorted.status_code == 400
    page = requests.get(fake.url + "/Items", headers=auth, timeout=3,
                        params={**base, "sortBy": "SortName"}).json()
    assert [i["Name"] for i in page["Items"]] == ["Alien.mkv"] and page["TotalRecordCount"] == 2
    page = requests.get(fake.url + "/Items", headers=auth, timeout=3, params={
        **base, "sortBy": "SortName", "enableTotalRecordCount": "false"}).json()
    assert page["TotalRecordCount"] == 1  # as Jellyfin: the page's own size


def remove_after_first_page(fake, removed: set[str]) -> None:
    """Remove these items from the fake once its first page has been answered."""

    def remove_once(request: Recorded) -> None:
        if request.param("startIndex") == "0":
            for item_id in removed:
                fake.items.pop(item_id, None)

    fake.between_pages = remove_once


def test_items_removed_before_the_offset_between_pages_skip_nothing(fake, small_pages):
    # 30 movies; after the first page, 5 of those already read are removed: every later
    # item moves 5 places up, past an offset paging that trusts the offset alone.
    names = [f"Film {n:03d}" for n in range(30)]
    ids = put_movies(fake, names)
    removed = set(ids[:5])
    remove_after_first_page(fake, removed)
    found = listed(player_for(fake))
    assert len(found) == len(set(found))  # nothing repeated
    assert set(ids) - removed <= set(found)  # nothing that stayed was skipped


def test_many_items_removed_between_pages_step_the_listing_back(fake, small_pages):
    # More removed than a page repeats (and a whole page's worth): the next page starts
    # past every item read so far, and the listing steps back until it finds one.
    ids = put_movies(fake, [f"Film {n:03d}" for n in range(40)])
    removed = set(ids[:12])
    remove_after_first_page(fake, removed)
    found = listed(player_for(fake))
    assert len(found) == len(set(found))
    assert set(ids) - removed <= set(found)
    assert "0" in [r.param("startIndex") for r in pages(fake)[1:]]  # it stepped back


def test_items_added_before_the_offset_between_pages_repeat_nothing(fake, small_pages):
    # Items sorting first arrive after the first page: every later item moves down, and
    # the next page begins with items already read; each is indexed once.
    ids = put_movies(fake, [f"Film {n:03d}" for n in range(30)])
    added: list[str] = []

    def add_once(request: Recorded) -> None:
        if request.param("startIndex") == "0" and not added:
            added.extend(put_movies(fake, [f"Aardvark {n}" for n in range(6)]))

    fake.between_pages = add_once
    found = listed(player_for(fake))
    assert len(found) == len(set(found))
    assert set(ids) <= set(found)
