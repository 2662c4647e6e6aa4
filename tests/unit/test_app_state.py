"""The app's remembered view (arctui.app_state): per store, a corrupt file is an empty state."""

from __future__ import annotations

from arctui.app_state import load_section, save_section


def test_sections_are_kept_per_store_and_a_corrupt_file_is_empty(tmp_path):
    path = tmp_path / "state" / "app-state.json"
    assert load_section("sqlite:///a.db", "runs", path) == {}  # no file yet
    save_section("sqlite:///a.db", "runs", {"sort": "loss", "filter": "msl>=2048"}, path)
    save_section("sqlite:///b.db", "runs", {"sort": "created"}, path)
    assert load_section("sqlite:///a.db", "runs", path) == {"sort": "loss", "filter": "msl>=2048"}
    assert load_section("sqlite:///b.db", "runs", path) == {"sort": "created"}
    assert load_section("sqlite:///b.db", "other", path) == {}
    path.write_text("{not json")
    assert load_section("sqlite:///a.db", "runs", path) == {}
    save_section("sqlite:///a.db", "runs", {"sort": "id"}, path)  # a corrupt file is replaced, not fatal
    assert load_section("sqlite:///a.db", "runs", path) == {"sort": "id"}
    path.write_text('["a list"]')
    assert load_section("sqlite:///a.db", "runs", path) == {}
