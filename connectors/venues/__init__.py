"""Venue connections: the supervised WebSocket session and the REST client."""
