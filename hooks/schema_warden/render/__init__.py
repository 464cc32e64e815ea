"""Text, Markdown, JSON and Mermaid from plain data: pure, no I/O."""
