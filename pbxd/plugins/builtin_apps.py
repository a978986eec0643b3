"""Dropin: pbxd's built-in dialplan applications, found by ``twisted.plugin`` like any plugin."""

from pbxd.apps.basic import Answer, GotoApp, Hangup, Set, Wait
from pbxd.apps.dial import Dial
from pbxd.apps.media import Echo, Playback
from pbxd.apps.menu import Menu
from pbxd.apps.record_call import RecordCall
from pbxd.apps.voicemail import Voicemail
from pbxd.apps.voicemail_main import VoicemailMain

answer = Answer()
hangup = Hangup()
wait = Wait()
set_ = Set()
goto = GotoApp()
dial = Dial()
playback = Playback()
echo = Echo()
menu = Menu()
record_call = RecordCall()
voicemail = Voicemail()
voicemail_main = VoicemailMain()
