"""The quarterly report: a quarter in ClickHouse -> one HTML file (charts inline) and one JSON.

- ``reports.quarters``  quarters written like '2022Q2': their days and the quarter before
- ``reports.queries``   one quarter from ClickHouse (the report's only I/O with the store)
- ``reports.series``    the quarter's figures as plain data: series, rankings, episodes, health
- ``reports.changes``   change detection on a daily series (segmented log-linear fits)
- ``reports.events``    events of note from the series, as dated sentences
- ``reports.charts``    charts as inline SVG
- ``reports.build``     figures, tables and events -> HTML (``templates/``) and JSON
"""
