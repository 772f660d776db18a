"""The Qt layer of IKD Studio: PySide6 and pyqtgraph widgets on top of the Qt-free engine."""
