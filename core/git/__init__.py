"""Git is the truth (DESIGN §4): the repo registry, commit reconciliation, verification, plan
drift and the TODO.md bridge. Nothing here knows about HTTP or Telegram."""
