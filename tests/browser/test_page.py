"""The web page in headless Chromium: make a track, play it, read its metadata, manage history."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dgx_music.audio.notes import relative_key
from tests.browser.conftest import API_KEY

# Also added by tests/conftest.py to everything in this folder; explicit for readers.
#: One worker runs the page's tests, so Chromium starts once.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

#: Longest wait for a synth job to complete in the page, milliseconds.
JOB_TIMEOUT_MS = 60_000
PROMPT = "warm lofi hip hop groove, 84 bpm in A minor — café ☕"


@pytest.fixture
def page(browser: Any, server_url: str) -> Iterator[Any]:
    """A page on the server that records script errors and any request that leaves it."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: (
            message.type == "error" and page.problems.append(f"console error: {message.text}")
        ),
    )
    page.on(
        "request",
        lambda request: (
            request.url.startswith((server_url, "data:", "blob:"))
            or page.problems.append(f"external request: {request.url}")
        ),
    )
    page.goto(server_url)
    page.wait_for_selector("#model option[value='synth']", state="attached")
    try:
        yield page
    finally:
        context.close()


def number_in(text: str) -> float:
    match = re.search(r"-?\d+(\.\d+)?", text)
    assert match, text
    return float(match.group())


def test_make_play_and_delete_a_track(page: Any, artifacts: Path) -> None:
    assert page.input_value("#model") == "synth"  # the default model is not installed here
    page.fill("#prompt", PROMPT)
    page.fill("#duration", "4")
    page.fill("#seed", "42")
    page.focus("#prompt")
    page.keyboard.press("Control+Enter")  # the keyboard submits

    page.wait_for_selector("#job-status[data-status='completed']", timeout=JOB_TIMEOUT_MS)
    page.wait_for_selector("#result", state="visible")
    page.wait_for_function(
        "() => { const a = document.getElementById('player');"
        " return a.readyState >= 1 && a.duration > 0; }"
    )
    player = page.evaluate(
        "() => { const a = document.getElementById('player');"
        " return {src: a.currentSrc, duration: a.duration, error: a.error,"
        " canPlay: a.canPlayType('audio/wav')}; }"
    )
    assert re.search(r"/api/v1/generations/[0-9a-f-]{36}/audio$", player["src"])
    assert player["error"] is None
    assert player["canPlay"] in {"maybe", "probably"}
    assert player["duration"] == pytest.approx(4.0, abs=0.05)

    assert number_in(page.text_content("dd[data-field='tempo']")) == pytest.approx(84, rel=0.05)
    assert "BPM" in page.text_content("dd[data-field='tempo']")
    # The page shows what the analysis found, a guess as a guess (analysis accuracy is tested in
    # tests/unit and tests/integration).
    job = page.evaluate("async (url) => (await fetch(url)).json()", player["src"][: -len("/audio")])
    found = job["metadata"]
    hedge = " (uncertain)" if "key_uncertain" in found["flags"] else ""
    assert page.text_content("dd[data-field='key']") == found["key"] + hedge
    lufs = page.text_content("dd[data-field='lufs']")
    assert "LUFS" in lufs and number_in(lufs) == pytest.approx(-16, abs=0.5)
    assert page.text_content("dd[data-field='seed']") == "42"
    page.wait_for_selector("#waveform[data-points]", state="attached")
    assert page.get_attribute("#download-link", "href").endswith("/audio?download=true")

    row = page.locator("#history-body tr").first
    assert row.locator(".prompt-cell").text_content() == PROMPT
    assert row.locator(".status").text_content() == "completed"
    page.screenshot(path=str(artifacts / "browser-completed-track.png"), full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=re.compile("^Delete")).focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#history-body tr", state="detached")
    assert page.text_content("#history-message") == "No tracks yet."
    assert page.is_hidden("#current")
    assert page.problems == []


def test_extend_a_track(page: Any, artifacts: Path) -> None:
    page.fill("#prompt", "bright funk, 110 bpm in E minor")
    page.fill("#duration", "2")
    page.click("#submit-button")
    page.wait_for_selector("#job-status[data-status='completed']", timeout=JOB_TIMEOUT_MS)
    first = page.get_attribute("#current", "data-job-id") or ""

    row = page.locator("#history-body tr").first
    row.get_by_role("button", name=re.compile("^Extend")).click()
    assert page.is_visible("#continue-note")
    assert "bright funk" in page.text_content("#continue-text")
    assert page.text_content("#submit-button") == "Extend"
    page.fill("#duration", "3")
    page.click("#submit-button")
    page.wait_for_function(f"() => document.getElementById('current').dataset.jobId !== {first!r}")
    page.wait_for_selector("#job-status[data-status='completed']", timeout=JOB_TIMEOUT_MS)
    page.wait_for_function(
        "() => { const a = document.getElementById('player');"
        " return a.readyState >= 1 && a.duration > 0; }"
    )
    duration = page.evaluate("() => document.getElementById('player').duration")
    assert duration == pytest.approx(5.0, abs=0.05)  # the 2 s track, then 3 s more
    assert page.is_hidden("#continue-note")  # the next submission starts fresh
    assert page.text_content("#submit-button") == "Generate"
    page.screenshot(path=str(artifacts / "browser-extended-track.png"), full_page=True)
    assert page.problems == []


def test_errors_are_shown_next_to_their_fields(page: Any, artifacts: Path) -> None:
    page.fill("#prompt", "   ")
    page.fill("#duration", "399")
    page.click("#submit-button")

    page.wait_for_selector("#prompt-error", state="visible")
    assert "must not be empty" in page.text_content("#prompt-error").lower()
    assert page.get_attribute("#prompt", "aria-invalid") == "true"
    page.fill("#prompt", "a valid prompt")
    assert page.is_hidden("#prompt-error")  # editing clears the message
    page.click("#submit-button")

    page.wait_for_selector("#duration-error", state="visible")
    assert "at most 300" in page.text_content("#duration-error")
    assert page.get_attribute("#duration", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "duration"
    assert page.is_hidden("#current")
    page.screenshot(path=str(artifacts / "browser-field-errors.png"), full_page=True)
    # A 422 is an expected answer, but Chromium logs every failed request to the console.
    assert [p for p in page.problems if "422" not in p] == []


@pytest.mark.parametrize("server_url", ["keyed"], indirect=True)
def test_a_server_with_an_api_key(page: Any, artifacts: Path) -> None:
    assert page.evaluate("document.getElementById('key-settings').open") is True
    page.fill("#prompt", "short keyed groove, 100 bpm in C major")
    page.fill("#duration", "2")
    page.click("#submit-button")

    page.wait_for_selector("#api-key-error", state="visible")
    assert "API key" in page.text_content("#api-key-error")
    assert page.evaluate("document.activeElement.id") == "api-key"

    page.fill("#api-key", API_KEY)
    page.click("#submit-button")
    page.wait_for_selector("#job-status[data-status='completed']", timeout=JOB_TIMEOUT_MS)
    page.wait_for_function(
        "() => { const a = document.getElementById('player');"
        " return a.readyState >= 1 && a.duration > 0; }"
    )
    # <audio> cannot send the key: the page fetched the file and plays it from memory.
    assert page.evaluate("document.getElementById('player').currentSrc").startswith("blob:")
    # An unseeded 2 s clip: a key stated as fact is C major's notes; a guess is marked as one.
    shown = page.text_content("dd[data-field='key']")
    assert shown.endswith(" (uncertain)") or shown in {"C major", relative_key("C major")}
    page.wait_for_selector("#waveform[data-points]", state="attached")
    assert [p for p in page.problems if "401" not in p] == []


def test_an_uncertain_tempo_and_key_read_as_guesses(page: Any) -> None:
    # The server's analysis decides what is uncertain; here its answer is rewritten to flag
    # the tempo only, then nothing, and the page must follow the flags.
    def flag(flags: list[str]) -> Any:
        def handle(route: Any) -> None:
            response = route.fetch()
            job = response.json()
            if job.get("metadata"):
                job["metadata"]["flags"] = flags
            route.fulfill(response=response, json=job)

        return handle

    one_generation = re.compile(r".*/api/v1/generations/[0-9a-f-]{36}$")
    for flags, tempo_hedged in ((["tempo_uncertain"], True), ([], False)):
        page.route(one_generation, flag(flags))
        earlier = page.get_attribute("#current", "data-job-id")
        page.fill("#prompt", "steady groove, 100 bpm in C major")
        page.fill("#duration", "2")
        page.click("#submit-button")
        # The first job's "completed" and its result stay on the page until the new job is
        # followed: wait for the new one before reading its status.
        page.wait_for_function(
            "earlier => document.getElementById('current').dataset.jobId !== earlier",
            arg=earlier,
        )
        page.wait_for_selector("#job-status[data-status='completed']", timeout=JOB_TIMEOUT_MS)
        page.wait_for_selector("#result", state="visible")
        tempo = page.text_content("dd[data-field='tempo']")
        assert tempo.endswith("BPM (uncertain)") is tempo_hedged, tempo
        assert not page.text_content("dd[data-field='key']").endswith("(uncertain)")
        page.unroute(one_generation)
    assert page.problems == []
