"""twistd dropin for pbxd: ``twistd -n pbx -c etc/config.yml``.

Imports nothing from pbxd and never the reactor: the module ``pbxd.tap`` is
loaded only when ``twistd pbx`` actually runs.
"""

from twisted.application.service import ServiceMaker

pbx = ServiceMaker(
    "pbxd",
    "pbxd.tap",
    "A PBX and telephony server framework (SIP over UDP, TCP and TLS).",
    "pbx",
)
