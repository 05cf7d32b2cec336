"""The "Add to Google Wallet" link: a save URL with an RS256 JWT signed by the service account.

The JWT only references the object by id (a "skinny" JWT): the object itself is created
by sync_card(). Embedding the full object would push the URL past the ~1800 characters
Google's own pass-converter allows, and would let a stale link overwrite newer data.
"""

import time

import jwt

from . import conf
from .payload import object_id_for

SAVE_URL = "https://pay.google.com/gp/v/save/"


def save_link(card):
    """The save URL for the card's pass. The card must have been synced for it to open."""
    account = conf.load_service_account()
    claims = {
        "iss": account.email,
        "aud": "google",
        "typ": "savetowallet",
        "iat": int(time.time()),
        "origins": conf.origins(),
        "payload": {"genericObjects": [{"id": object_id_for(card)}]},
    }
    # kid lets Google pick the right public key when the service account has several.
    headers = {"kid": account.key_id} if account.key_id else None
    key = conf.private_key_object(account.private_key)
    token = jwt.encode(claims, key, algorithm="RS256", headers=headers)
    return SAVE_URL + token
