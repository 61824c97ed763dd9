"""A carrier gateway played by SIPp: it challenges the edge's INVITE (401 or
407), then answers the INVITE that carries credentials (or challenges that
one too, to refuse them); and the digest check a test makes of what it got.

SIPp's <verifyauth> reads an Authorization header only, so a 401 gateway
checks the digest itself, and a refusal ends its call as failed; a 407
gateway's Proxy-Authorization is checked by the test (digest_matches).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tests.sip import SDP

NONCE = "5f1e9b8a7c6d"
REALM = "gw.rtb.test"

_RESPONSE = """
  <send{retrans}>
    <![CDATA[
      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:gateway@[local_ip]:[local_port];transport=[transport]>{extra}
      Content-Length: [len]
{body}
    ]]>
  </send>
"""
_SDP = SDP.replace("o=publisher", "o=gateway")
_BYE_OK = """
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""


def _challenge(code: int) -> str:
    header = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
    status = "401 Unauthorized" if code == 401 else "407 Proxy Authentication Required"
    return (_RESPONSE.format(retrans="", status=status, body="", extra=(
        f'\n      {header}: Digest realm="{REALM}", nonce="{NONCE}", algorithm=MD5'))
        + '  <recv request="ACK"/>\n')


def gateway_scenario(workdir: Path, *, challenge: int, username: str = "", password: str = "",
                     refuse: bool = False) -> Path:
    """The scenario file: challenge, then answer (or, with refuse, challenge again)."""
    steps = ['  <recv request="INVITE" crlf="true"/>\n', _challenge(challenge)]
    if refuse:
        steps += ['  <recv request="INVITE"/>\n', _challenge(challenge)]
    else:
        if challenge == 401:
            steps += [f'''  <recv request="INVITE">
    <action><verifyauth assign_to="authvalid" username="{username}" password="{password}"/></action>
  </recv>
  <nop test="authvalid" next="answer"/>
''', _RESPONSE.format(retrans="", status="403 Forbidden", body="", extra=""),
                      '  <recv request="ACK"/>\n  <recv request="NEVER" timeout="500"/>\n'
                      '  <label id="answer"/>\n']
        else:
            steps.append('  <recv request="INVITE"/>\n')
        steps += [_RESPONSE.format(retrans="", status="180 Ringing", body="", extra=""),
                  _RESPONSE.format(retrans=' retrans="500"', status="200 OK", body=_SDP,
                                   extra="\n      Content-Type: application/sdp"),
                  '  <recv request="ACK" crlf="true"/>\n  <recv request="BYE"/>\n', _BYE_OK]
    path = workdir / f"gateway-{challenge}-{'refuse' if refuse else 'answer'}.xml"
    path.write_text('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="gateway">\n'
                    + "".join(steps) + "</scenario>\n")
    return path


def invites(trace: str) -> list[str]:
    """The INVITEs a SIPp trace received, each as its text."""
    return re.findall(r"^INVITE .*?(?=\r?\n\r?\n)", trace, re.M | re.S)


def digest_matches(invite: str, header: str, username: str, password: str) -> bool:
    """Whether the INVITE's digest (in `header`) answers our challenge with this password."""
    found = re.search(rf"^{header}: Digest (.*)$", invite, re.M | re.I)
    if not found:
        return False
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', found[1]))

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    expected = md5(f"{md5(f'{username}:{REALM}:{password}')}:{NONCE}:"
                   f"{md5('INVITE:' + fields.get('uri', ''))}")
    return (fields.get("username"), fields.get("realm"), fields.get("nonce"),
            fields.get("response")) == (username, REALM, NONCE, expected)
