"""Opt-outs: STOP/START keywords, Cast's unsubscribe list, the suppression list the outbound
worker enforces, and the contact DND updates in GHL that follow them."""
