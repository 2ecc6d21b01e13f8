"""The colpali-engine family: `col` (the Col* multi-vector encoders and the loading they share),
`bi` (their single-vector Bi* twins), `specs` (the families, their classes and budgets)."""
