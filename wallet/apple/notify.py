"""Pushing a pass's update to its registered devices, and what APNs's answers do to the
registrations (Apple's "Handling notification responses from APNs").

410 Unregistered: the device dropped the pass, its registration goes. 400 BadDeviceToken
means the token is unknown *in this environment*, which is also what a production token
gets from the sandbox, so a registration is removed only when the production APNs refused
its token twice. The pushes themselves go through wallet/apple/apns.py's client.
"""

from dataclasses import dataclass

from django.utils import timezone

from wallet.models import AppleDeviceRegistration

from . import apns_conf
from .apns import PushResult, shared_client


@dataclass
class PushReport:
    """What notify_devices() did: devices told, registrations removed, tokens refused."""

    sent: int = 0
    removed: int = 0
    #: BadDeviceToken from the sandbox: registrations kept (see notify_devices()).
    kept: int = 0
    #: BadDeviceToken from production, first time: removed if refused once more.
    refused_once: int = 0
    base_url: str = ""

    def describe(self):
        """The notes for an item's detail, e.g. "2 device(s) notified."."""
        text = f"{self.sent} device(s) notified."
        if self.removed:
            text += f" {self.removed} unregistered device(s) removed."
        if self.refused_once:
            text += (
                f" {self.refused_once} device token(s) refused (BadDeviceToken); removed "
                "if refused again."
            )
        if self.kept:
            text += " " + self.warning()
        return text

    def warning(self):
        """Something an operator should act on, or ""."""
        if not self.kept:
            return ""
        return (
            f"{self.kept} device token(s) refused as BadDeviceToken by APNS_BASE_URL "
            f"{self.base_url}, which is not the production APNs: they most likely belong to "
            "the production environment, so the registrations were kept; check "
            f"APNS_BASE_URL (production: {apns_conf.PRODUCTION_URL})."
        )


def notify_devices(registrations, client=None):
    """Push to each registration's device (one push per distinct token) and apply what
    APNs answered; returns a PushReport.

    410 Unregistered deletes the registration at once. BadDeviceToken from the sandbox
    keeps it (a production token is "bad" there); from production, the first refusal of
    a token is recorded and the second deletes it, so one odd answer costs no device
    its updates. Deletes and marks are conditional on the token, so a device that
    registered again meanwhile with a fresh token keeps its registration.

    Raises what ApnsClient.push() raises; ApnsRefused and ApnsUnreachable are
    provider-wide (the wallet batch pauses on them).
    """
    client = client or shared_client()
    report = PushReport(base_url=client.base_url)
    results = {}
    for registration in registrations:
        token = registration.push_token
        if token not in results:
            results[token] = client.push(token)
        result = results[token]
        same_token = AppleDeviceRegistration.objects.filter(pk=registration.pk, push_token=token)
        if result is PushResult.SENT:
            report.sent += 1
            if registration.refused_push_token:
                same_token.update(refused_push_token="", refused_at=None)
        elif result is PushResult.UNREGISTERED:
            report.removed += same_token.delete()[0]
        elif not client.production:
            report.kept += 1
        elif same_token.filter(refused_push_token=token).delete()[0]:
            report.removed += 1
        else:
            same_token.update(refused_push_token=token, refused_at=timezone.now())
            report.refused_once += 1
    return report
