"""Helpers shared by test modules (importable as `helpers`: tests/ is on sys.path through its conftest)."""


def tiny_config(data, out, **overrides):
    from ikd_gui.engine.training import TrainConfig

    values = dict(data=str(data), mode="student", arch="resnet18", epochs=1, batch_size=16, image_size=64,
                  out=str(out), seed=0)
    values.update(overrides)
    return TrainConfig(**values)
