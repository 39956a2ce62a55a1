import pytest

from tlzoo.errors import ConfigError, NotFoundError, TlzooError
from tlzoo.registry import Registry


def test_get_list_and_glob():
    reg: Registry[int] = Registry("backbone")
    for i, name in enumerate(["efficientnet_b0", "efficientnet_v2_s", "resnet50"]):
        reg.register(name, i)
    assert reg.get("resnet50") == 2
    assert reg.names("efficientnet*") == ["efficientnet_b0", "efficientnet_v2_s"]
    assert reg.names() == ["efficientnet_b0", "efficientnet_v2_s", "resnet50"]
    assert "resnet50" in reg and len(reg) == 3


def test_unknown_name_suggests_close_names():
    reg: Registry[int] = Registry("plugin")
    reg.register("medical-imaging", 1)
    with pytest.raises(NotFoundError) as err:
        reg.get("medical-imagin")
    assert "unknown plugin 'medical-imagin'" in str(err.value)
    assert "did you mean 'medical-imaging'" in str(err.value)
    assert isinstance(err.value, TlzooError)


def test_duplicate_registration_is_refused_unless_replaced():
    reg: Registry[int] = Registry("plugin")
    reg.register("a", 1)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a", 2)
    reg.register("a", 2, replace=True)
    assert reg.get("a") == 2


def test_real_registries_suggest(tmp_path):
    import tlzoo
    from tlzoo.plugin import get_plugin

    with pytest.raises(NotFoundError, match="did you mean 'mobilenet_v2'"):
        tlzoo.create_backbone("mobilenetv2", weights=None)
    with pytest.raises(NotFoundError, match="did you mean 'medical-imaging'"):
        get_plugin("medical_imaging")
