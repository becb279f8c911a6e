"""`ugro web`: the app in a browser (textual-serve) and a token-protected JSON API, as one service on the master."""
