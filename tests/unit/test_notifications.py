"""Who gets the email about a run and what it contains: address parsing, rendering, MIME."""

from __future__ import annotations

import email
import email.policy
import html
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from bitbatch.model import Run, RunStatus
from bitbatch.notifications import Email, Mailer, parse_author_email, render_email

SENDER = "bitbatch@example.com"
RECIPIENT = "ada@example.com"
COMMIT = "7de5c744462044a30d3f711293f80ff03adf7d79"
OUTPUT_LINK = (
    "https://bitbatch-artifacts.s3.amazonaws.com/runs/r/output/report.html?X-Amz-Expires=604800&X-Amz-Signature=ab12"
)
OUTPUT_URI = "s3://bitbatch-artifacts/runs/r/output/report.html"


def sample_run(**changes) -> Run:
    run = Run(
        run_id="20240305T144112Z-3f9a1c0e2b7d",
        product="cloud",
        repository="highland/weather-stations",
        repository_uuid="{8c1f4e2a-5b7d-4c39-9e60-1a2b3c4d5e6f}",
        ref="refs/heads/main",
        ref_name="main",
        ref_type="branch",
        commit=COMMIT,
        previous_commit=None,
        commit_url=f"https://bitbucket.org/highland/weather-stations/commits/{COMMIT}",
        pusher_name="Ada Lovelace",
        pusher_email=RECIPIENT,
        delivery_id="e3b9c1a7-54d2-4f08-9c6e-1b7a2d85f390",
        status=RunStatus.SUCCEEDED,
    )
    return replace(run, **changes)


class TagCollector(HTMLParser):
    """Collects the tags and attribute names an HTML document really contains."""

    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def parse_message(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


# parse_author_email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ada Lovelace <ada@example.com>", "ada@example.com"),
        ("ada@example.com", "ada@example.com"),
        ('"Lovelace, Ada" <ada@example.com>', "ada@example.com"),
        ("Ada Lovelace <ada.lovelace+builds@mail.example.co.uk>", "ada.lovelace+builds@mail.example.co.uk"),
    ],
    ids=["name-and-address", "no-angle-brackets", "quoted-name", "plus-and-subdomain"],
)
def test_author_address_found(raw, expected):
    # Given a git author string with one address
    # When it is parsed
    # Then the address is returned
    assert parse_author_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "Ada Lovelace",
        "Ada Lovelace <>",
        "Ada Lovelace <ada@localhost>",
        "Ada Lovelace <ada@@example.com>",
        "Ada Lovelace <ada example@example.com>",
    ],
    ids=["none", "empty", "name-only", "empty-brackets", "no-dotted-domain", "double-at", "space"],
)
def test_author_without_valid_address(raw):
    # Given an author string without one well-formed address
    # When it is parsed
    # Then there is no address, so the fallback recipient is used
    assert parse_author_email(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "Ada <ada@example.com>, Eve <eve@example.com>",
        "Ada <ada@example.com> <eve@example.com>",
        "ada@example.com, eve@example.com",
    ],
    ids=["two-named", "two-brackets", "two-bare"],
)
def test_author_with_two_addresses(raw):
    # Given an author string with two addresses
    # When it is parsed
    # Then neither is used
    assert parse_author_email(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "Ada <ada@example.com>\r\nBcc: eve@example.com",
        "Ada <ada@example.com>\nBcc: eve@example.com",
        "Ada <ada@example.com\r>",
        "Ada\r\n <ada@example.com>",
        "Ada <ada@example.com>\x00",
    ],
    ids=["crlf-header", "lf-header", "cr-in-address", "folded", "nul"],
)
def test_author_with_control_characters(raw):
    # Given an author string with CR, LF or another control character
    # When it is parsed
    # Then it is rejected, so no header can be added to the email
    assert parse_author_email(raw) is None


def test_author_name_with_comma():
    # Given a git author whose name has a comma, which git stores unquoted
    raw = "Lovelace, Ada <ada@example.com>"

    # When it is parsed
    # Then the one address is found
    assert parse_author_email(raw) == "ada@example.com"


# render_email


def test_render_success():
    # Given a run that succeeded and a link to its report
    run = sample_run()

    # When its email is rendered
    rendered = render_email(run, RECIPIENT, OUTPUT_LINK, OUTPUT_URI)

    # Then the subject, text and HTML carry the facts of the run
    assert rendered.recipients == [RECIPIENT]
    assert rendered.subject == "[bitbatch] highland/weather-stations main 7de5c7444620: succeeded"
    assert "Repository: highland/weather-stations" in rendered.text
    assert "Ref: refs/heads/main" in rendered.text
    assert "Commit: 7de5c7444620" in rendered.text
    assert "Pushed by: Ada Lovelace" in rendered.text
    assert f"Run: {run.run_id}" in rendered.text
    assert f"Output: {OUTPUT_URI}" in rendered.text
    assert OUTPUT_LINK in rendered.text
    assert run.commit_url in rendered.text
    assert html.escape(OUTPUT_LINK, quote=True) in rendered.html
    assert "Reason" not in rendered.text


def test_render_failure_has_reason_and_no_output():
    # Given a run that failed with a reason
    run = sample_run(status=RunStatus.FAILED, failure_reason="the job exited with code 1")

    # When its email is rendered without an output link
    rendered = render_email(run, RECIPIENT, None, None)

    # Then the subject reports the failure, the body gives the reason, and no result link is offered
    assert rendered.subject.endswith(": failed")
    assert "Reason: the job exited with code 1" in rendered.text
    assert "the job exited with code 1" in rendered.html
    assert "Open the run" not in rendered.text
    assert "Open the run" not in rendered.html


def test_render_failure_without_expiry_note():
    # Given a failed run, whose email has no presigned link
    run = sample_run(status=RunStatus.FAILED, failure_reason="the job exited with code 1")

    # When its email is rendered
    rendered = render_email(run, RECIPIENT, None, None)

    # Then it does not warn about a link that expires
    assert "expires" not in rendered.text


HOSTILE_FIELDS = {
    "repository": 'highland/<script>alert("repository")</script>',
    "ref": "refs/heads/<img src=x onerror=alert(1)>",
    "ref_name": "<img src=x onerror=alert(1)>",
    "commit": "<b>0123456789abcdef",
    "pusher_name": 'Ada "<i onclick=alert(2)>" & Co',
    "run_id": "<em>20240305T144112Z</em>",
    "failure_reason": "exit code 1: <svg onload=alert(3)>",
    "commit_url": 'https://bitbucket.org/x/"><script>alert(4)</script>',
}
HOSTILE_LINK = 'https://example.com/report?a=1&b="><script>alert(5)</script>'
HOSTILE_URI = "s3://bucket/<iframe src=x>"


def render_hostile() -> Email:
    run = sample_run(**HOSTILE_FIELDS)
    return render_email(run, RECIPIENT, HOSTILE_LINK, HOSTILE_URI)


def test_render_html_contains_only_own_tags():
    # Given a run whose every text field contains HTML
    rendered = render_hostile()

    # When the HTML part is parsed
    collector = TagCollector()
    collector.feed(rendered.html)

    # Then the only elements and attributes are the template's own
    assert collector.tags <= {"html", "body", "h2", "table", "tr", "th", "td", "p", "a", "small"}
    assert collector.attributes <= {"align", "href"}


@pytest.mark.parametrize("field", ["repository", "ref", "pusher_name", "run_id", "failure_reason"])
def test_render_html_escapes_field(field):
    # Given a run whose field contains HTML
    rendered = render_hostile()

    # When the HTML part is read
    # Then the field appears escaped and never raw
    value = HOSTILE_FIELDS[field]
    assert html.escape(value) in rendered.html
    assert value not in rendered.html


def test_render_html_escapes_short_commit():
    # Given a run whose commit contains HTML
    rendered = render_hostile()

    # When the HTML part is read
    # Then its first twelve characters appear escaped
    assert html.escape(HOSTILE_FIELDS["commit"][:12]) in rendered.html
    assert "<b>" not in rendered.html


@pytest.mark.parametrize(
    "value",
    [HOSTILE_LINK, HOSTILE_FIELDS["commit_url"], HOSTILE_URI],
    ids=["output-link", "commit-url", "output-uri"],
)
def test_render_html_escapes_links(value):
    # Given links and an S3 URI that contain quotes and tags
    rendered = render_hostile()

    # When the HTML part is read
    # Then each appears escaped, quotes included, and never raw
    assert html.escape(value, quote=True) in rendered.html
    assert value not in rendered.html


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ref_name", "main\r\nBcc: eve@example.com"),
        ("repository", "highland/weather\nstations"),
        ("repository", "highland/\x1b[31mweather\x00"),
        ("commit", "7de5c744\r\n46"),
    ],
    ids=["crlf-in-ref", "lf-in-repository", "escape-and-nul", "crlf-in-commit"],
)
def test_render_subject_has_no_control_characters(field, value):
    # Given a run with a control character in a field used in the subject
    run = sample_run(**{field: value})

    # When its email is rendered
    rendered = render_email(run, RECIPIENT, None, None)

    # Then the subject is one line of printable characters
    assert not any(ord(character) < 0x20 or ord(character) == 0x7F for character in rendered.subject)


def test_render_text_facts_stay_on_their_lines():
    # Given a pusher name with a line break that imitates another fact
    run = sample_run(pusher_name="Ada\nOutcome: failed")

    # When its email is rendered
    rendered = render_email(run, RECIPIENT, None, None)

    # Then the name stays on the "Pushed by" line
    assert "Pushed by: Ada Outcome: failed" in rendered.text.splitlines()
    assert "Outcome: failed" not in rendered.text.splitlines()


# Mailer.build_message


def test_message_has_text_and_html_parts():
    # Given a rendered email
    rendered = render_email(sample_run(), RECIPIENT, OUTPUT_LINK, OUTPUT_URI)

    # When the MIME message is built
    message = parse_message(Mailer(None, SENDER).build_message(rendered))

    # Then it is multipart/alternative with a text and an HTML part holding the rendered bodies
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert message.get_body(("plain",)).get_content() == rendered.text
    assert message.get_body(("html",)).get_content().rstrip("\n") == rendered.html


def test_message_headers():
    # Given a rendered email
    rendered = render_email(sample_run(), RECIPIENT, None, None)

    # When the MIME message is built
    message = parse_message(Mailer(None, SENDER).build_message(rendered))

    # Then sender, recipient and subject are set once each
    assert message["From"] == SENDER
    assert message["To"] == RECIPIENT
    assert message["Subject"] == rendered.subject
    assert message.get_all("To") == [RECIPIENT]


def test_message_non_ascii_subject_round_trips():
    # Given a run on a branch with letters outside ASCII
    rendered = render_email(sample_run(ref_name="données-été"), RECIPIENT, None, None)

    # When the MIME message is built and read back
    raw = Mailer(None, SENDER).build_message(rendered)
    message = parse_message(raw)

    # Then the header is encoded on the wire and decodes to the same subject
    assert raw.isascii()
    assert message["Subject"] == rendered.subject


def test_message_hostile_ref_adds_no_header():
    # Given a run whose ref name tries to add a Bcc header
    rendered = render_email(sample_run(ref_name="main\r\nBcc: eve@example.com"), RECIPIENT, None, None)

    # When the MIME message is built
    message = parse_message(Mailer(None, SENDER).build_message(rendered))

    # Then no Bcc header exists
    assert message["Bcc"] is None
