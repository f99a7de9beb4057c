"""Outgoing mail over SMTP (stdlib smtplib, in a thread so the event loop stays free)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage

from klikkflow.kit.settings import MailSettings

log = logging.getLogger("klikkflow.mail")


class MailNotSent(Exception):
    pass


def _send(settings: MailSettings, message: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(message)


async def send_mail(settings: MailSettings, to: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = settings.mail_from, to, subject
    message.set_content(body)
    if not settings.smtp_host:
        # Development without a mail server: say so (never the body: it holds tokens).
        log.warning("no SMTP host configured; mail %r to %s not sent", subject, to)
        return
    try:
        await asyncio.to_thread(_send, settings, message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailNotSent(f"mail to {to} failed: {exc}") from exc
