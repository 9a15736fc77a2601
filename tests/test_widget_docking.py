"""All four widgets docked on a laptop screen (issue #13, point 2): measured, not assumed.

The window is 1366 x 768 (and 1600 x 1200); the plugin's docks are added as the demo and the
npe2 contributions add them (scrollable, tabbed). Asserted: the window is not forced larger,
the slide canvas keeps at least 60 % of the width, every dock's minimum fits the screen, and the
Explain widget needs no sideways scrolling. The other widgets' widths are measured and printed.
"""

import pytest
from qtpy.QtWidgets import QApplication

pytestmark = pytest.mark.viewer


def _four_widgets(viewer):
    from napari_xhisto._widgets.annotate import AnnotateWidget
    from napari_xhisto._widgets.evaluate import EvaluateWidget
    from napari_xhisto._widgets.explain import ExplainWidget
    from napari_xhisto._widgets.export_widget import ExportWidget

    return {"Explain": ExplainWidget(viewer), "Annotate": AnnotateWidget(viewer),
            "Evaluate": EvaluateWidget(viewer), "Export": ExportWidget(viewer)}


def _settle(qtbot, ms=300):
    for _ in range(5):
        QApplication.processEvents()
    qtbot.wait(ms)


def _window(make_napari_viewer, qtbot, size):
    """A shown viewer whose window has exactly ``size``."""
    viewer = make_napari_viewer(show=True)
    main = viewer.window._qt_window
    main.resize(*size)
    _settle(qtbot)
    assert (main.width(), main.height()) == size
    return viewer, main


@pytest.mark.parametrize("size", [(1366, 768), (1600, 1200)], ids=["1366x768", "1600x1200"])
def test_four_docks_leave_the_slide_most_of_the_window(make_napari_viewer, qtbot, size):
    from napari_xhisto._widgets.common.docking import ScrollDock, dock_widgets

    viewer, main = _window(make_napari_viewer, qtbot, size)
    docks = dock_widgets(viewer, _four_widgets(viewer))
    _settle(qtbot)
    canvas = viewer.window._qt_viewer.canvas.native
    widths = {name: (dock.width(), dock.widget().content_width()) for name, dock in docks.items()}
    print(f"{size}: window {main.width()} x {main.height()}, canvas {canvas.width()} px "
          f"({canvas.width() / main.width():.0%}); dock width / content width: {widths}")
    assert (main.width(), main.height()) == size  # no dock forced the window larger
    assert main.minimumSizeHint().width() <= size[0] and main.minimumSizeHint().height() <= size[1]
    assert canvas.width() >= 0.6 * main.width()
    for dock in docks.values():  # one tabbed dock area
        assert isinstance(dock.widget(), ScrollDock)
        assert dock.minimumSizeHint().height() <= size[1] // 3
    shown = [name for name, d in docks.items() if not d.visibleRegion().isEmpty()]
    assert shown == ["Explain"]
    explain = docks["Explain"].widget()
    assert explain.viewport().width() >= explain.inner.minimumSizeHint().width()
    assert not explain.horizontalScrollBar().isVisible()  # Explain fits: no sideways scrolling


def test_docks_opened_from_the_plugins_menu_are_tabbed(make_napari_viewer, qtbot):
    from napari_xhisto._widgets.common.docking import ExplainDock, ScrollDock

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    docks = {}
    for name in ("Explain", "Annotate", "Export"):
        docks[name], widget = viewer.window.add_plugin_dock_widget("napari-xhisto", name)
        assert isinstance(widget, ScrollDock)
        _settle(qtbot, 100)
    assert isinstance(docks["Explain"].widget(), ExplainDock)
    main = viewer.window._qt_window
    tabbed = main.tabifiedDockWidgets(docks["Explain"])
    assert docks["Annotate"] in tabbed and docks["Export"] in tabbed
    assert (main.width(), main.height()) == (1366, 768)


@pytest.mark.parametrize("size", [(1366, 768), (1600, 1200)], ids=["1366x768", "1600x1200"])
def test_meta_and_slide_level_docks_fit_beside_the_others(make_napari_viewer, qtbot, size):
    """The two later docks (Meta, Slide-level) tabbed with the four: no sideways scrolling."""
    from napari_xhisto._widgets.common.docking import dock_widgets
    from napari_xhisto._widgets.meta import MetaWidget
    from napari_xhisto._widgets.slide_level import SlideLevelWidget

    viewer, main = _window(make_napari_viewer, qtbot, size)
    widgets = _four_widgets(viewer)
    widgets.update({"Meta": MetaWidget(viewer), "Slide-level": SlideLevelWidget(viewer)})
    # long inputs the user may have: they must scroll inside their fields, not the dock
    widgets["Slide-level"].codes_edit.setText("/data/" + "very-long-folder-name/" * 8 + "s.nic.zarr")
    widgets["Slide-level"].model_edit.setText("/models/" + "slide-level-model-" * 6)
    docks = dock_widgets(viewer, widgets)
    _settle(qtbot)
    assert (main.width(), main.height()) == size
    for name in ("Meta", "Slide-level"):
        docks[name].raise_()
        _settle(qtbot, 150)
        scroll = docks[name].widget()
        assert not scroll.visibleRegion().isEmpty()
        assert scroll.viewport().width() >= scroll.inner.minimumSizeHint().width(), name
        assert not scroll.horizontalScrollBar().isVisible(), name


def test_six_tabs_show_their_names_in_full(make_napari_viewer, qtbot):
    """With all six docks tabbed at 1366 px, no tab name is cut ("Ex…" could be Explain or
    Export): the tab bar scrolls instead."""
    from qtpy.QtWidgets import QTabBar

    from napari_xhisto._widgets.common.docking import dock_widgets
    from napari_xhisto._widgets.meta import MetaWidget
    from napari_xhisto._widgets.slide_level import SlideLevelWidget

    viewer, main = _window(make_napari_viewer, qtbot, (1366, 768))
    widgets = _four_widgets(viewer)
    widgets.update({"Meta": MetaWidget(viewer), "Slide-level": SlideLevelWidget(viewer)})
    dock_widgets(viewer, widgets)
    _settle(qtbot)
    (bar,) = [b for b in main.findChildren(QTabBar)
              if "Explain" in [b.tabText(i) for i in range(b.count())]]
    assert [bar.tabText(i) for i in range(bar.count())] == list(widgets)
    metrics = bar.fontMetrics()
    for i in range(bar.count()):
        assert bar.tabRect(i).width() >= metrics.horizontalAdvance(bar.tabText(i)), \
            bar.tabText(i)
