"""The local web viewer (``eventmem ui``) and the one-file session report
(``eventmem report``).

Modules, each with one job:

* `eventmem.ui.data` -- what the pages show, read through the public `eventmem.Store`;
* `eventmem.ui.html` -- escaping, links, the layout and the static assets;
* `eventmem.ui.chart` -- the token-use chart (inline SVG);
* `eventmem.ui.pages` -- each page's HTML;
* `eventmem.ui.app` -- the read-only Starlette application (needs ``eventmem[ui]``);
* `eventmem.ui.report` -- a session's pages as one self-contained HTML file.

Only `eventmem.ui.app` imports Starlette; the report needs no extra.
"""
