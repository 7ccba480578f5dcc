"""The voice channel itself: one Speech Engine WebSocket, its turns, the trust boundary and spoken
confirmations."""
