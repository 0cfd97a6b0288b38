"""What the one list+watch loop does after each watch (`listwatch.after_watch`, pure)."""

from __future__ import annotations

from rebootd.listwatch import Progress, after_watch


def test_a_watch_the_server_ends_after_events_is_resumed_at_once_from_its_resource_version() -> None:
    step = after_watch(progress=Progress(failures=3), ending="ended", events=2, seconds=0.01)
    assert (step.relist, step.backoff_attempt, step.progress) == (False, 0, Progress())


def test_a_quiet_watch_that_stayed_up_is_resumed_at_once() -> None:
    step = after_watch(progress=Progress(), ending="ended", events=0, seconds=60.0)
    assert (step.relist, step.backoff_attempt) == (False, 0)


def test_a_watch_that_ends_at_once_with_nothing_in_it_is_a_failure_that_backs_off_longer_each_time() -> None:
    progress = Progress()
    attempts = []
    for _ in range(4):
        step = after_watch(progress=progress, ending="ended", events=0, seconds=0.001)
        assert not step.relist  # resumed from the same resourceVersion, after the back-off
        attempts.append(step.backoff_attempt)
        progress = step.progress
    assert attempts == [1, 2, 3, 4]


def test_the_first_410_relists_at_once_and_a_410_after_the_relist_backs_off() -> None:
    first = after_watch(progress=Progress(), ending="expired", events=0, seconds=0.001)
    assert (first.relist, first.backoff_attempt) == (True, 0)
    again = after_watch(progress=first.progress, ending="expired", events=0, seconds=0.001)
    assert (again.relist, again.backoff_attempt) == (True, 2)
    third = after_watch(progress=again.progress, ending="expired", events=0, seconds=0.001)
    assert (third.relist, third.backoff_attempt) == (True, 3)


def test_a_410_after_a_stable_watch_relists_at_once_again() -> None:
    tired = Progress(failures=5, expired_last=True)
    step = after_watch(progress=tired, ending="expired", events=7, seconds=0.5)
    assert (step.relist, step.backoff_attempt, step.progress) == (
        True,
        0,
        Progress(failures=1, expired_last=True),
    )


def test_a_broken_stream_resumes_from_its_resource_version_after_a_backoff() -> None:
    step = after_watch(progress=Progress(failures=1), ending="failed", events=0, seconds=0.2)
    assert (step.relist, step.backoff_attempt, step.progress) == (False, 2, Progress(failures=2))


def test_a_failure_after_a_stable_watch_starts_the_backoff_again() -> None:
    step = after_watch(progress=Progress(failures=6), ending="failed", events=0, seconds=30.0)
    assert step.backoff_attempt == 1


def test_a_failure_between_two_410s_makes_the_next_410_relist_at_once() -> None:
    expired = after_watch(progress=Progress(), ending="expired", events=0, seconds=0.0)
    failed = after_watch(progress=expired.progress, ending="failed", events=0, seconds=0.0)
    step = after_watch(progress=failed.progress, ending="expired", events=0, seconds=0.0)
    assert (step.relist, step.backoff_attempt) == (True, 0)
    assert step.progress.failures == 3
