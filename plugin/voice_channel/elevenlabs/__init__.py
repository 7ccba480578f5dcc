"""The ElevenLabs side: conversation tokens for the page, the page, the REST API, engines, the
doctor, and a client that plays ElevenLabs in the protocol."""
