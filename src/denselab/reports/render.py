"""The page a report is: report.md, figures/*.png and a self-contained report.html.

A report says what it contains, as Markdown lines and HTML body parts built with the
tables and figures here; `write_page` makes the rest: the title, the HTML head and its
stylesheet, each figure embedded as a base64 PNG, and the files, each written atomically.
"""

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from denselab.outputs import prepare_output_dir, write_bytes_atomically

# What every report page looks like; a report adds the rules of its own elements (`style`).
BASE_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;text-align:right}"
    "td:first-child{text-align:left}img{max-width:100%}"
)


@dataclass(frozen=True)
class Figure:
    """A figure of a report: figures/NAME.png beside report.md, embedded in report.html."""

    name: str  # file name stem under figures/
    caption: str
    png: bytes


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(row) + " |" for row in rows]]


def markdown_figure(figure: Figure) -> list[str]:
    return [f"![{figure.caption}](figures/{figure.name}.png)", "", f"*{figure.caption}*", ""]


def html_table(header: tuple[str, ...], rows: list[tuple[str, ...]], marks: bool = False) -> str:
    """A table in a div.scroll (a report's style may let it scroll sideways); with `marks`,
    the cells after the first two are td.mark."""
    e = html.escape
    cells = "".join(f"<th>{e(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(
        f"<td class='mark'>{e(cell)}</td>" if marks and index >= 2 else f"<td>{e(cell)}</td>"
        for index, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<div class='scroll'><table><tr>{cells}</tr>{body}</table></div>"


def html_figure(figure: Figure) -> str:
    e = html.escape
    data = base64.b64encode(figure.png).decode()
    return (f"<figure><img alt='{e(figure.caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(figure.caption)}</figcaption></figure>")


def html_page(title: str, body: list[str], style: str = "") -> str:
    """A whole report.html: `title` as its title and first heading, then `body`."""
    e = html.escape
    return "\n".join([
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{e(title)}</title><style>{BASE_STYLE}{style}</style></head><body>",
        f"<h1>{e(title)}</h1>", *body, "</body></html>",
    ])


def write_page(out_dir: Path, title: str, markdown: list[str], body: list[str], figures: list[Figure],
               style: str = "") -> Path:
    """Write figures/*.png, report.md (`title`, then the `markdown` lines) and report.html
    (`title`, then the `body` parts, under `style`) into `out_dir`, each file atomically."""
    out_dir = prepare_output_dir(out_dir)
    figures_dir = prepare_output_dir(out_dir / "figures")
    for figure in figures:
        write_bytes_atomically(figures_dir / f"{figure.name}.png", figure.png)
    write_bytes_atomically(out_dir / "report.md", "\n".join([f"# {title}", "", *markdown]).encode())
    write_bytes_atomically(out_dir / "report.html", html_page(title, body, style).encode())
    return out_dir
