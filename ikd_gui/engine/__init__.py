"""The Qt-free engine: data, models, hybrid network, schedules, training, metrics, runs and inference."""
