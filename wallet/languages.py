"""The languages wallet passes carry: those a company may choose (Company.language)."""

from cards.models import Company


def pass_languages():
    """Language codes every pass is translated into, e.g. ("en", "de")."""
    return tuple(code for code, _name in Company._meta.get_field("language").choices)
