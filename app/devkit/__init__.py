"""The development kit: a fake GoHighLevel and a fake Cast.ph that speak real HTTP, the test
signing keys standing in for GHL's, and the harness that runs the bridge as a real process
between them.

The end-to-end tests, the benchmarks and `cast-ghl sandbox` all use this one implementation. It
ships in the package (wheel and Docker image) only so that the sandbox runs from an install; the
production path (`python -m app`, `app.main`) never imports it.
"""
