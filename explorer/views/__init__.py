"""Figure builders, one module per page: results in, plotly figures out (no streamlit)."""
