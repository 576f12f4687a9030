"""Conveyor as a Mailchimp for test suites: the request journal, fault rules, pacing and the
test controls' operations (reset, fixtures, virtual time). docs/emulator.md."""
