"""PDFs as pages: `render` (probe, chunk, render and read the pages) over `poppler` (the tools)."""
