"""Is FFM's gate open in a trained v2 DPCN? M_pse^r inside vs outside the target on test episodes."""
import sys, torch, numpy as np
sys.path[:0] = ["/tmp/snap1", "/tmp/snap1/research"]
torch.set_num_threads(1)
from harness import build_data, Episodes, collate
from gen import Variant
from dpcn_lite.config import get_preset
from dpcn_lite.model import build_model
import torch.nn.functional as F
tag, path = sys.argv[1], sys.argv[2]
d = torch.load(f"/work/research/research/cache/{tag}.pt", weights_only=False)["test"]
model = build_model("dpcn", get_preset("cpu", pretrained=True))
model.load_state_dict(torch.load(path, weights_only=False)); model.eval()
eps = Episodes(d, [1, 2, 3, 4, 5], 0, 200)
ins, outs, ins0, outs0, frac = [], [], [], [], []
with torch.no_grad():
    for s in range(0, 200, 25):
        feats, batch = collate(d, eps.specs[s:s + 25])
        out = model.forward_features(feats.query, feats.support, batch["support_masks"], (160, 160), return_intermediates=True)
        r = out.intermediates["pseudo_mask_refined"]; p0 = out.intermediates["pseudo_mask_initial"]
        m = F.interpolate((batch["query_mask"] == 1).float()[:, None], size=r.shape[-2:], mode="area") > 0.5
        ins.append(r[m]); outs.append(r[~m]); ins0.append(p0[m]); outs0.append(p0[~m]); frac.append((r > 0.5).float().mean())
cat = lambda xs: torch.cat(xs).float()
print(f"M_pse^r target {cat(ins).mean():.3f} other {cat(outs).mean():.3f} | share > 0.5: {torch.stack(frac).mean():.3f}")
print(f"M_pse^0 target {cat(ins0).mean():.3f} other {cat(outs0).mean():.3f}")
