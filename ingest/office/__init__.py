"""Office documents as pages: `convert` (LibreOffice to PDF, contained), then `render` (the PDF's pages)."""
