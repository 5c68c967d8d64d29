"""The tutorial-bugs page's content: the catalogue and the effect of each bug."""
