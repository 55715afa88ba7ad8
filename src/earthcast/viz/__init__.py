"""Plots and animations (matplotlib, Agg canvas: no display needed).

Modules:
    colormaps: SEVIR VIL and rain-rate colour maps with units; ``colors_for`` picks one.
    sequences: context / truth / forecast panels, one column per frame → PNG (``origin`` and
        ``image_origin``: south-first grids such as ENSO are drawn north up).
    animate: GIF of truth vs forecast side by side.
    scores: skill (CSI, …) versus lead time, one panel per threshold.
    cuboids: pictures of cuboid-attention decompositions.
"""
