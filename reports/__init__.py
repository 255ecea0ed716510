"""The quarterly report: a quarter in ClickHouse -> one HTML file (charts inline) and one JSON.

- ``reports.quarters``  quarters written like '2022Q2': their days and the quarter before
- ``reports.queries``   one quarter from ClickHouse (the report's only I/O with the store)
- ``reports.series``    the quarter's figures as plain data: series, rankings, episodes, health
- ``reports.changes``   change detection on a daily series (segmented log-linear fits)
- ``reports.events``    events of note from the series, as dated sentences quoting weekly averages
- ``reports.ranking``   events ranked by significance, one cause told once with its consequences
- ``reports.victims``   DoS victims, their backscatter episodes aggregated
- ``reports.charts``    charts as inline SVG (Okabe-Ito colours, dashes, numbered event marks)
- ``reports.health``    the packets stored per sensor and day, outages drawn as gaps
- ``reports.prose``     the paragraphs under the figures, written from the ranked events
- ``reports.notes``     the analyst's own sections, from a safe Markdown subset
- ``reports.report``    the built report as data
- ``reports.build``     figures, tables and events -> ``Report``; writes the HTML and the JSON
- ``reports.render``    the HTML page (``templates/``) and the terminal tables
- ``reports.export``    the JSON
- ``reports.notify``    notification lists: sources to report per AS with their evidence, a summary per region
"""
