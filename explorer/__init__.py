"""The Streamlit side of the explorer: session state, cached computation, figures, widgets.

``frcnn_core`` does the maths and never imports streamlit; pages hold layout and widgets only.
"""
