"""URIs as providers expect them: ASCII only, as RFC 3986 defines a URI.

People type websites as they read them ("https://www.müller-söhne.de/team/jürgen").
Browsers convert such IRIs on the fly; an API that validates URI syntax (Google
Wallet's linksModuleData, images' sourceUri) refuses them, and the card then never
reaches the wallet. So every URI sent is converted the way browsers do (RFC 3987
section 3.1): the host to IDNA ("xn--mller-shne-kcb9d.de", UTS #46 processing, as
WHATWG URL parsing), everything else percent-encoded as UTF-8, leaving characters that
are already legal (including existing %XX escapes) as they are, so converting twice
changes nothing.
"""

from urllib.parse import quote, urlsplit, urlunsplit

import idna

# RFC 3986 section 2: unreserved and sub-delims characters, and those a component may
# hold besides; "%" keeps existing escapes.
_SUB_DELIMS = "!$&'()*+,;="
_PATH_SAFE = "/%:@-._~" + _SUB_DELIMS
_QUERY_SAFE = _PATH_SAFE + "?"


def ascii_host(host):
    """A host name in IDNA (ASCII) form; an IP address or ASCII name as it is."""
    if not host or host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        # Not a valid internationalised name: encoded anyway (as Python's older IDNA
        # 2003 codec does), so the provider's refusal names the field, not a crash here.
        return host.encode("idna").decode("ascii")


def ascii_uri(uri):
    """The URI with an IDNA host and a percent-encoded path, query and fragment."""
    uri = (uri or "").strip()
    if not uri or uri.isascii() and " " not in uri:
        return uri
    parts = urlsplit(uri)
    if parts.scheme == "mailto":
        return f"mailto:{ascii_email(parts.path)}" + (
            f"?{quote(parts.query, safe=_QUERY_SAFE)}" if parts.query else ""
        )
    netloc = parts.netloc
    if netloc:
        userinfo, at, hostport = netloc.rpartition("@")
        host, colon, port = hostport.partition(":")
        if hostport.startswith("["):  # an IPv6 literal keeps its colons
            host, colon, port = hostport, "", ""
        userinfo = quote(userinfo, safe="%:" + "-._~" + _SUB_DELIMS) if at else ""
        netloc = f"{userinfo}{at}{ascii_host(host)}{colon}{port}"
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            quote(parts.path, safe=_PATH_SAFE),
            quote(parts.query, safe=_QUERY_SAFE),
            quote(parts.fragment, safe=_QUERY_SAFE),
        )
    )


def ascii_email(address):
    """An email address for a mailto: URI: the local part percent-encoded, the domain
    in IDNA."""
    local, at, domain = (address or "").strip().rpartition("@")
    if not at:
        return quote(address, safe="%-._~!$'()*+,;=")
    return f"{quote(local, safe='%-._~!$' + chr(39) + '()*+,;=')}@{ascii_host(domain)}"
