"""Reports rendered from summary.json (+ records): Markdown, HTML, PNG plots."""
