"""Inbound SMS: replies from Cast's SIM gateway into GHL conversations."""
