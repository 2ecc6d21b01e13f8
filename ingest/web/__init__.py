"""Web pages as sources: `render` (the entry points), `browser` (the shared Chromium), `sandbox`
(how Chromium starts), `capture` and `tiles` (one page's screenshots), `pages` (options, geometry,
`Page` records), `proxy`, `safety` and `local` (what a page may reach)."""
