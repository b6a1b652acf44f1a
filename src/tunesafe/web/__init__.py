"""The dashboard (`tunesafe serve`): server-rendered pages and a JSON API over the evidence store.
See docs/dashboard.md for the pages, the access rules and the API."""
