"""The resume store's flags belong to the event loop: a background save that fails is
taken in there (saved again in STATE_SAVE_S), never flagged from the saver thread."""
import pytest

from node.peer import resume, state


def failing_save(*_):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("wait", [False, True])
def test_a_failed_save_is_retried_and_the_saver_thread_sets_no_flag(monkeypatch, wait):
    monkeypatch.setattr(state, "save", failing_save)
    store = resume.ResumeStore("p1", lambda: [], lambda: "token")
    try:
        store.changed()
        store.save(wait=wait)
        if not wait:
            store.saving.result()               # the thread is done: it flagged nothing
            assert not store.dirty
        assert store.next_deadline() is not None  # taken in on the loop: saved again in STATE_SAVE_S
        assert store.dirty and store.saving is None
        monkeypatch.setattr(state, "save", lambda *_: None)
        store.save(wait=True)
        assert not store.dirty and store.next_deadline() is None
    finally:
        store.saver.shutdown()
