"""Figures without pyplot (vgbench.figures): a PNG of the figure's size, written atomically."""

import struct

from matplotlib.figure import Figure

from vgbench.figures import save_figure


def test_a_figure_is_saved_as_a_png_without_pyplot(tmp_path):
    figure = Figure(figsize=(4, 3))
    figure.add_subplot().plot([0, 1, 2], [1, 0, 1])
    save_figure(figure, tmp_path / "plot.png")
    data = (tmp_path / "plot.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    # 110 dpi, trimmed to the drawn area (bbox_inches="tight"): a little under 440 x 330 pixels
    assert 300 < width <= 440 and 200 < height <= 330
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
