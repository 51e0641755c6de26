"""The viewer's controls, one widget per file. Each ``draw_*`` function reads and writes one state object from
``viewer.state`` (plus read-only model facts) and returns whether the user changed it this frame."""
