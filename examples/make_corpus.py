"""Regenerate the example corpus in examples/corpus (needs `pip install reportlab`; dev only).

The generated files are committed, so users never run this. Each document has a text layer,
headings, a table or a drawing, like the pages people index.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent / "corpus"

DOCS = {
    "solar-installation-guide.pdf": [
        ("Solar Panel Installation Guide", [
            "Safety first. Switch off the main breaker before any work on the roof or the electrical panel.",
            "Wear a fall-arrest harness on pitched roofs and never work alone.",
            "Photovoltaic modules produce voltage whenever light falls on them; cover them while wiring.",
        ], None),
        ("Mounting the panels", [
            "Fix the aluminium rails to the rafters with stainless lag bolts, two per roof hook.",
            "Keep a gap of 10 mm between modules for thermal expansion.",
            "Tighten the mid clamps and end clamps to 12 Nm with a torque wrench.",
        ], [("Part", "Quantity"), ("Roof hooks", "16"), ("Rails (4 m)", "4"), ("Mid clamps", "12"), ("End clamps", "8")]),
        ("Wiring the inverter", [
            "Connect the string cables to the inverter's DC input with MC4 connectors, positive first.",
            "Check the open-circuit voltage of each string with a multimeter before connecting.",
            "The AC output goes to a dedicated breaker; earth the inverter chassis and the rails.",
        ], None),
    ],
    "acme-q3-2025-report.pdf": [
        ("ACME Corp. Third Quarter 2025 Results", [
            "Quarterly revenue grew 14% year over year to $412 million.",
            "Operating margin improved to 18.2% on lower freight and component costs.",
            "Free cash flow for the quarter was $61 million.",
        ], None),
        ("Revenue by segment", [
            "Industrial tools remained the largest segment; cloud services grew fastest.",
        ], [("Segment", "Q3 2024", "Q3 2025", "Growth"), ("Industrial tools", "$190M", "$205M", "8%"),
            ("Consumer devices", "$120M", "$118M", "-2%"), ("Cloud services", "$51M", "$89M", "75%")]),
        ("Outlook and guidance", [
            "For the full fiscal year we expect revenue between $1.58 and $1.62 billion.",
            "Capital expenditure will rise as the new Rotterdam plant opens in the spring.",
            "Risks include currency movements and tariffs on imported components.",
        ], None),
    ],
    "sourdough-baking.pdf": [
        ("Keeping a sourdough starter", [
            "Feed the starter every day with equal weights of flour and water.",
            "A healthy starter doubles in volume within six hours and smells pleasantly sour.",
            "Store it in the fridge between bakes and feed it the day before you bake.",
        ], None),
        ("Baking schedule for a country loaf", [
            "Mix levain, flour, water and salt; rest the dough, then fold it four times over two hours.",
            "Shape, proof overnight in the fridge, and bake in a preheated Dutch oven at 250 C.",
            "Bake 20 minutes covered, then 25 minutes uncovered until the crust is deep brown.",
        ], [("Step", "Time"), ("Autolyse", "45 min"), ("Bulk fermentation", "4 h"), ("Cold proof", "12 h")]),
    ],
    "bird-field-guide.pdf": [
        ("Birds of prey", [
            "The peregrine falcon is the fastest animal on earth, diving at over 300 km/h.",
            "Buzzards soar in wide circles over open fields, calling with a mewing cry.",
            "Owls hunt at night; their soft feathers make their flight almost silent.",
        ], None),
        ("Garden songbirds", [
            "The robin sings all year round, even at night near street lights.",
            "Blue tits nest in holes and raise up to twelve chicks in a single brood.",
            "Feed sunflower hearts in winter; clean feeders often to stop disease.",
        ], None),
    ],
}


def _pdf(path: Path, pages: list) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    width, height = A4
    for number, (title, paragraphs, table) in enumerate(pages, start=1):
        c.setFillColor(colors.HexColor("#1f4e79"))
        c.rect(0, height - 90, width, 90, fill=1, stroke=0)
        c.setFillColor(colors.white)
        c.setFont("Helvetica-Bold", 22)
        c.drawString(50, height - 58, title)
        c.setFillColor(colors.black)
        c.setFont("Helvetica", 12)
        y = height - 140
        for para in paragraphs:
            c.drawString(50, y, para[:95])
            y -= 26
        if table:
            y -= 20
            col = (width - 100) / len(table[0])
            for r, row in enumerate(table):
                if r == 0:
                    c.setFillColor(colors.HexColor("#dde8f3"))
                    c.rect(50, y - 6, width - 100, 22, fill=1, stroke=0)
                    c.setFillColor(colors.black)
                c.setFont("Helvetica-Bold" if r == 0 else "Helvetica", 11)
                for i, cell in enumerate(row):
                    c.drawString(56 + i * col, y, cell)
                y -= 24
        c.setFont("Helvetica", 9)
        c.drawString(width - 80, 30, f"Page {number}")
        c.showPage()
    c.save()


def _timetable(path: Path) -> None:
    img = Image.new("RGB", (900, 520), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=28)
    draw.rectangle((0, 0, 900, 70), fill="#c0392b")
    draw.text((20, 18), "Harbour Line timetable (weekdays)", fill="white", font=font)
    rows = [("Central", "06:05", "06:35", "07:05"), ("Museum", "06:12", "06:42", "07:12"),
            ("Harbour", "06:20", "06:50", "07:20"), ("Lighthouse", "06:31", "07:01", "07:31")]
    for r, row in enumerate(rows):
        for i, cell in enumerate(row):
            draw.text((30 + i * 210, 110 + r * 90), cell, fill="black", font=font)
    img.save(path)


def main() -> None:
    """Write every example document."""
    OUT.mkdir(exist_ok=True)
    for name, pages in DOCS.items():
        _pdf(OUT / name, pages)
    _timetable(OUT / "harbour-line-timetable.png")
    print(f"wrote {len(DOCS) + 1} files to {OUT}")


if __name__ == "__main__":
    main()
