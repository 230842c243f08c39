"""After the commit point, a report-pending record that cannot be written is housekeeping: the run
still counts as done, and no message may say that nothing was changed."""

from __future__ import annotations

import pytest

from recap_label.store import completion
from recap_label.store.paths import REPORT_PENDING


@pytest.fixture(autouse=True)
def _fresh_state():
    completion.reset()
    yield
    completion.reset()


def test_a_record_that_cannot_be_written_still_marks_the_run_done(tmp_path):
    completion.phase("nothing was changed")
    # no meta/recap_label folder: writing the record fails with an OSError, as on a full disk
    completion.record_pending(tmp_path, {"command": "label", "run": "run-0001"}, "labeled run-0001")
    assert not (tmp_path / REPORT_PENDING).exists()
    assert completion.is_done()
    message = completion.failed_message("disk full while writing the report")
    assert message.startswith("labeled run-0001; then: disk full")
    assert "nothing was changed" not in completion.interrupt_message()


def test_the_record_is_written_when_it_can_be(tmp_path):
    (tmp_path / REPORT_PENDING).parent.mkdir(parents=True)
    completion.record_pending(tmp_path, {"command": "label", "run": "run-0001"}, "labeled run-0001")
    assert completion.read_pending(tmp_path) == {"command": "label", "run": "run-0001", "summary": "labeled run-0001"}
    assert completion.is_done()
