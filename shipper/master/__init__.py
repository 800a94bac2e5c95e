"""Master side: takes snapshot sets on a schedule and pushes them to the destination."""
