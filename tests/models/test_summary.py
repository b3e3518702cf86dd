import torch
from torch import nn

from atrous.models import mobile_deeplabv3
from atrous.models.summary import summary


def test_hand_counted_case():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*3*9 + 8 = 224 params; 10*10*8 * 3*9 = 21600 MAdds
        nn.BatchNorm2d(8),  # 16 params, no MAdds counted
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # 72 params; 10*10*8 * 9 = 7200
        nn.Conv2d(8, 4, 1, stride=2, bias=False),  # 32 params; 5*5*4 * 8 = 800
        nn.Flatten(),
        nn.Linear(100, 10),  # 1010 params; 1000 MAdds
    )
    result = summary(model, (3, 10, 10))
    assert result.params == 224 + 16 + 72 + 32 + 1010
    assert result.madds == 21600 + 7200 + 800 + 1000
    assert "MAdds" in str(result)


def test_mobile_deeplabv3_near_the_paper():
    # MobileNetV2 paper, Table 7: 2.11M params, 2.75B MAdds at 513x513 (OS16, no ASPP).
    torch.manual_seed(0)
    result = summary(mobile_deeplabv3(num_classes=21), (3, 513, 513))
    assert round(result.params / 1e6, 2) == 2.11
    assert 2.6e9 < result.madds < 2.9e9
