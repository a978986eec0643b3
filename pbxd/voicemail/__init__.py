"""Voicemail as a service of the call-control layer (layer 4): boxes, message-waiting
notifications, voicemail to email. Applications reach it only through
:class:`pbxd.interfaces.IVoicemailService`."""
