"""The app repairs this machine's orphaned runs like every headless command: a run whose supervisor
and training died while nobody watched must not stay "running" on screen."""

from __future__ import annotations

from arctui.app import make_app
from db.store import RunStore
from tests.supervisor.helpers import START, dead_group, running_run, steps


async def test_app_marks_an_orphaned_run_crashed_and_says_so(tmp_path, monkeypatch, wait_for, notified):
    monkeypatch.setenv("ARCTUI_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    with RunStore.open(url) as store:
        run_id, _ = running_run(store, "orphan", dead_group(), [START, *steps(3)],
                                log="RuntimeError: the machine rebooted\n")
    app = make_app(url, analyze_prompts=False)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        message = await wait_for(pilot, lambda: notified.find("orphan"))
        assert "marked crashed" in message
        with RunStore.open(url) as store:
            run = store.get_run(run_id)
            assert run.status == "crashed"
            assert store.get_summary(run_id).last_step == 3
