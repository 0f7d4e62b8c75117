"""Choose the recipient of a run's email and render its text and HTML parts."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email.message import EmailMessage

from bitbatch.model import Run, RunStatus

# One plain address: local part, "@", a dotted domain. No spaces, quotes or angle brackets.
ADDRESS_PATTERN = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


# Git writes an author as "Name <address>", with the name unquoted (it may hold commas).
GIT_AUTHOR_PATTERN = re.compile(r"^[^<>]*<(?P<address>[^<>]*)>\s*$")


def parse_author_email(raw_author: str | None) -> str | None:
    """Return the single address in a git author string "Name <address>" or a bare address, or None.

    Anything but exactly one well-formed address (several, none, CR or LF)
    returns None, so the caller falls back to the configured recipient.
    """
    if not raw_author or CONTROL_CHARACTERS.search(raw_author):
        return None
    match = GIT_AUTHOR_PATTERN.match(raw_author.strip())
    address = match.group("address").strip() if match else raw_author.strip()
    if not ADDRESS_PATTERN.match(address):
        return None
    return address


def clean_text(text: str) -> str:
    """Replace control characters, so a value cannot add lines to a subject or header."""
    return CONTROL_CHARACTERS.sub(" ", text).strip()


@dataclass(frozen=True)
class Email:
    recipients: list[str]
    subject: str
    text: str
    html: str


EXPIRY_NOTE = "The link expires after a set time (14 days unless the stack says otherwise)."

STATUS_WORDS = {
    RunStatus.SUCCEEDED: "succeeded",
    RunStatus.FAILED: "failed",
}


def render_email(run: Run, recipients: list[str] | str, output_link: str | None, output_uri: str | None) -> Email:
    """Render the plain-text and HTML parts from one list of facts."""
    outcome = STATUS_WORDS.get(RunStatus(run.status), run.status.lower())
    subject = clean_text(f"[bitbatch] {run.repository} {run.ref_name} {run.short_commit}: {outcome}")

    facts = [
        ("Outcome", outcome),
        ("Repository", run.repository),
        ("Ref", run.ref),
        ("Commit", run.short_commit),
        ("Pushed by", run.pusher_name),
        ("Run", run.run_id),
    ]
    if run.failure_reason:
        facts.append(("Reason", run.failure_reason))
    if output_uri:
        facts.append(("Output", output_uri))

    text_lines = [f"bitbatch run {run.run_id} {outcome}.", ""]
    text_lines += [f"{label}: {clean_text(str(value))}" for label, value in facts]
    if output_link:
        text_lines += ["", "Open the run:", output_link]
    if run.commit_url:
        text_lines += ["", "Commit in Bitbucket:", run.commit_url]
    if output_link:
        text_lines += ["", EXPIRY_NOTE]

    rows = "".join(
        f"<tr><th align=\"left\">{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>"
        for label, value in facts
    )
    links = ""
    if output_link:
        links += f'<p><a href="{html.escape(output_link, quote=True)}">Open the run</a></p>'
    if run.commit_url:
        links += f'<p><a href="{html.escape(run.commit_url, quote=True)}">Commit in Bitbucket</a></p>'
    note = f"<p><small>{html.escape(EXPIRY_NOTE)}</small></p>" if output_link else ""
    html_body = (
        "<!doctype html><html><body>"
        f"<h2>bitbatch run {html.escape(outcome)}</h2>"
        f"<table>{rows}</table>{links}{note}"
        "</body></html>"
    )
    recipients = [recipients] if isinstance(recipients, str) else list(recipients)
    return Email(recipients=recipients, subject=subject, text="\n".join(text_lines) + "\n", html=html_body)


class Mailer:
    """Sends email with SES (API v2) as one MIME message with a text and an HTML part."""

    def __init__(self, sesv2_client, sender: str):
        self._ses = sesv2_client
        self._sender = sender

    def build_message(self, email: Email) -> bytes:
        message = EmailMessage()
        message["Subject"] = email.subject
        message["From"] = self._sender
        message["To"] = ", ".join(email.recipients)
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        return message.as_bytes()

    def send(self, email: Email) -> str:
        response = self._ses.send_email(
            FromEmailAddress=self._sender,
            Destination={"ToAddresses": list(email.recipients)},
            Content={"Raw": {"Data": self.build_message(email)}},
        )
        return response["MessageId"]
