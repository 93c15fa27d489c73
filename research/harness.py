"""Research harness: render a variant, cache frozen Lite0 features, train heads, score base / novel / AUC / PANet."""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dpcn_lite.backbones import BackboneFeatures
from dpcn_lite.base import EpisodeFeatures
from dpcn_lite.config import get_preset
from dpcn_lite.model import build_model

from gen import Variant

ROOT = Path("/work/research/research")
CACHE = ROOT / "cache"
MIN_PIX = 234


def build_data(v: Variant, tag: str):
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{tag}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    from dpcn_lite.backbones import build_backbone

    bb = build_backbone("efficientnet_lite0", pretrained=True, train_layer4=False).eval()
    mean = torch.tensor(bb.mean).view(1, 3, 1, 1)
    std = torch.tensor(bb.std).view(1, 3, 1, 1)
    out = {}
    t0 = time.time()
    lib = None
    if v.name.startswith("lib:"):
        from data_utils.synthetic import SyntheticSource
        from data_utils.synthetic import get_benchmark
        import dataclasses as _dc
        name, _, extra = v.name[4:].partition("+")
        bench = get_benchmark(name)
        if extra:
            bench = _dc.replace(bench, **json.loads(extra))
        lib = SyntheticSource(benchmark=bench, cache_size=0, seed=v.seed)
    for split in ("train", "test"):
        n = lib.num_images(split) if lib else v.num_images(split)
        imgs, labels = [], []
        for j in range(n):
            if lib:
                im, lb = lib.load(f"{split}-{j:05d}")
                lb = lb.astype(np.int32)
                lb[lb == 255] = -1
            else:
                im, lb = v.render(split, j)
            imgs.append(im)
            labels.append(lb)
        t1 = time.time()
        labels = torch.from_numpy(np.stack(labels))
        mids, highs = [], []
        with torch.no_grad():
            for s in range(0, n, 64):
                x = torch.from_numpy(np.stack(imgs[s:s + 64])).permute(0, 3, 1, 2).float() / 255
                f = bb((x - mean) / std)
                mids.append(f.mid.half())
                highs.append(f.high.half())
        out[split] = dict(images=torch.from_numpy(np.stack(imgs)), labels=labels, mid=torch.cat(mids),
                          high=torch.cat(highs))
        print(f"{split}: {n} images render {t1 - t0:.0f}s features {time.time() - t1:.0f}s", flush=True)
        t0 = time.time()
        # class index
        idx = {}
        for j in range(n):
            cnt = torch.bincount(labels[j][labels[j] >= 0].flatten(), minlength=256)
            for c in torch.nonzero(cnt >= MIN_PIX).flatten().tolist():
                if c > 0:
                    idx.setdefault(c, []).append(j)
        out[split]["index"] = idx
    torch.save(out, path)
    return out


def binar(label, c):
    m = (label == c).long()
    m[label < 0] = 255
    return m


class Episodes:
    def __init__(self, data, classes, seed, n=None, fixed=True, shots=1):
        self.d = data
        self.classes = [c for c in classes if len(data["index"].get(c, [])) >= shots + 1]
        self.pairs = [(j, c) for c in self.classes for j in data["index"][c]]
        self.shots = shots
        self.seed = seed
        if fixed:
            rng = np.random.default_rng([seed, 99])
            order = rng.permutation(len(self.pairs))
            self.specs = [self._spec(rng, *self.pairs[int(order[i % len(order)])]) for i in range(n)]

    def _spec(self, rng, q, c):
        pool = [j for j in self.d["index"][c] if j != q]
        s = rng.choice(len(pool), size=self.shots, replace=False)
        return q, c, [pool[int(i)] for i in s]

    def random_batch(self, rng, b):
        return [self._spec(rng, *self.pairs[int(rng.integers(len(self.pairs)))]) for _ in range(b)]


def collate(d, specs):
    q = [s[0] for s in specs]
    sup = [s[2] for s in specs]
    b, k = len(specs), len(sup[0])
    flat = [j for js in sup for j in js]
    qf = BackboneFeatures(d["mid"][q].float(), d["high"][q].float())
    sf = BackboneFeatures(d["mid"][flat].float().view(b, k, *d["mid"].shape[1:]),
                          d["high"][flat].float().view(b, k, *d["high"].shape[1:]))
    qm = torch.stack([binar(d["labels"][s[0]], s[1]) for s in specs])
    sm = torch.stack([torch.stack([binar(d["labels"][j], s[1]) for j in s[2]]) for s in specs])
    return EpisodeFeatures(qf, sf), {"query_mask": qm, "support_masks": sm}


def score(pred_fn, d, eps: Episodes, bs=25):
    I, U = {}, {}
    fbI, fbU = np.zeros(2), np.zeros(2)
    for s in range(0, len(eps.specs), bs):
        specs = eps.specs[s:s + bs]
        feats, batch = collate(d, specs)
        pred = pred_fn(feats, batch, specs) if getattr(pred_fn, "wants_specs", False) else pred_fn(feats, batch)
        lab = batch["query_mask"]
        for i, sp in enumerate(specs):
            valid = lab[i] != 255
            p, l = pred[i][valid].bool(), lab[i][valid].bool()
            I[sp[1]] = I.get(sp[1], 0) + (p & l).sum().item()
            U[sp[1]] = U.get(sp[1], 0) + (p | l).sum().item()
            for k, (pp, ll) in enumerate(((~p), (~l)), ) if False else []:
                pass
            fbI += [((~p) & (~l)).sum().item(), (p & l).sum().item()]
            fbU += [((~p) | (~l)).sum().item(), (p | l).sum().item()]
    per = {c: I[c] / max(U[c], 1) for c in I}
    return 100 * float(np.mean(list(per.values()))), {c: round(100 * v, 1) for c, v in per.items()}, 100 * float(np.mean(fbI / fbU))


def model_pred(model):
    def f(feats, batch):
        with torch.no_grad():
            out = model.forward_features(feats.query, feats.support, batch["support_masks"], (160, 160))
        return out.logits.argmax(1)
    return f


def roc_auc_score(y, s):
    """Mann-Whitney AUC with average ranks for ties."""
    from scipy.stats import rankdata
    y = np.asarray(y).astype(bool)
    r = rankdata(s)
    npos, nneg = y.sum(), (~y).sum()
    return (r[y].sum() - npos * (npos + 1) / 2) / (npos * nneg)


def raw_feature_stats(d, eps: Episodes, level="mid"):
    """AUC of cos(query pixel, support fg prototype) target vs non-target; PANet untrained rule prediction."""
    scores, ys = [], []
    for s in range(0, len(eps.specs), 25):
        specs = eps.specs[s:s + 25]
        feats, batch = collate(d, specs)
        q = getattr(feats.query, level)
        sp = getattr(feats.support, level)[:, 0]
        sm = batch["support_masks"][:, 0]
        m = F.interpolate((sm == 1).float()[:, None], size=q.shape[-2:], mode="bilinear", align_corners=False)
        proto = (sp * m).sum((2, 3)) / (m.sum((2, 3)) + 5e-4)
        cos = F.cosine_similarity(q, proto[:, :, None, None], dim=1)
        cos = F.interpolate(cos[:, None], size=(160, 160), mode="bilinear", align_corners=False)[:, 0]
        lab = batch["query_mask"]
        valid = lab != 255
        scores.append(cos[valid].numpy()[::7])
        ys.append(lab[valid].numpy()[::7])
    return float(roc_auc_score(np.concatenate(ys), np.concatenate(scores)))


def panet_pred(level="mid"):
    def f(feats, batch):
        q = getattr(feats.query, level)
        sp = getattr(feats.support, level)[:, 0]
        sm = batch["support_masks"][:, 0]
        m = F.interpolate((sm == 1).float()[:, None], size=q.shape[-2:], mode="bilinear", align_corners=False)
        fg = (sp * m).sum((2, 3)) / (m.sum((2, 3)) + 5e-4)
        bg = (sp * (1 - m)).sum((2, 3)) / ((1 - m).sum((2, 3)) + 5e-4)
        cf = F.cosine_similarity(q, fg[:, :, None, None], dim=1)
        cb = F.cosine_similarity(q, bg[:, :, None, None], dim=1)
        logit = torch.stack([cb, cf], 1)
        return F.interpolate(logit, size=(160, 160), mode="bilinear", align_corners=False).argmax(1)
    return f


def colour_pred(d):
    """PANet's rule on raw pixel colours (no network): nearest of the support's fg / bg mean RGB (in Lab-free RGB)."""
    def f(feats, batch, specs):
        q = torch.stack([d["images"][s[0]] for s in specs]).float()  # B H W 3
        sp = torch.stack([d["images"][s[2][0]] for s in specs]).float()
        sm = batch["support_masks"][:, 0]
        fgm = (sm == 1).float()[..., None]
        bgm = (sm == 0).float()[..., None]
        fg = (sp * fgm).sum((1, 2)) / fgm.sum((1, 2)).clamp(min=1)
        bg = (sp * bgm).sum((1, 2)) / bgm.sum((1, 2)).clamp(min=1)
        dfg = ((q - fg[:, None, None]) ** 2).sum(-1)
        dbg = ((q - bg[:, None, None]) ** 2).sum(-1)
        return (dfg < dbg).long()
    f.wants_specs = True
    return f


def train(model, d, classes, steps, lr=1e-3, bs=8, seed=0, wd=1e-4, log_every=0, evalfn=None):
    torch.manual_seed(seed)
    eps = Episodes(d, classes, seed, fixed=False)
    rng = np.random.default_rng([seed, 5])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=steps, power=0.9)
    model.train()
    hist = []
    for it in range(steps):
        feats, batch = collate(d, eps.random_batch(rng, bs))
        out = model.loss(batch, features=feats)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        sched.step()
        if log_every and (it + 1) % log_every == 0 and evalfn:
            model.eval()
            hist.append((it + 1, evalfn(model)))
            print(f"  step {it + 1}: {hist[-1][1]}", flush=True)
            model.train()
    model.eval()
    return hist


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", default="{}")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--models", default="prototype,dpcn")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--overrides", default="{}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-episodes", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=0)
    ap.add_argument("--oracle", action="store_true")
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    v = Variant(**json.loads(a.variant))
    t0 = time.time()
    data = build_data(v, a.tag)
    tr, te = data["train"], data["test"]
    novel = [1, 2, 3, 4, 5]
    base_named = list(range(6, 21))
    nc = max(max(tr["index"]), 20)
    base_all = base_named + list(range(21, nc + 1))
    novel_eps = Episodes(te, novel, 0, a.test_episodes)
    base_eps = Episodes(te, base_named, 0, 300)
    fit_eps = Episodes(tr, base_named, 1, 200)
    res = {"tag": a.tag, "variant": json.loads(a.variant), "steps": a.steps, "lr": a.lr, "seed": a.seed,
           "overrides": json.loads(a.overrides)}
    if a.stats:
        res["auc_mid"] = raw_feature_stats(te, Episodes(te, novel, 0, 150), "mid")
        res["auc_high"] = raw_feature_stats(te, Episodes(te, novel, 0, 150), "high")
        res["panet_untrained_novel"] = score(panet_pred("mid"), te, novel_eps)[0]
        res["panet_untrained_base"] = score(panet_pred("mid"), te, base_eps)[0]
        res["colour_rule_novel"] = score(colour_pred(te), te, novel_eps)[0]
        print({k: res[k] for k in ("auc_mid", "auc_high", "panet_untrained_novel", "panet_untrained_base", "colour_rule_novel")}, flush=True)
    for name in [m for m in a.models.split(",") if m]:
        t1 = time.time()
        torch.manual_seed(a.seed)
        model = build_model(name, get_preset("cpu", pretrained=True, **json.loads(a.overrides)))
        evalfn = (lambda m: round(score(model_pred(m), te, Episodes(te, novel, 0, 200))[0], 1))
        hist = train(model, tr, base_all, a.steps, lr=a.lr, seed=a.seed, log_every=a.log_every, evalfn=evalfn)
        n, per, fb = score(model_pred(model), te, novel_eps)
        b = score(model_pred(model), te, base_eps)[0]
        f = score(model_pred(model), tr, fit_eps)[0]
        res[name] = dict(novel=round(n, 1), per_class=per, fb=round(fb, 1), base=round(b, 1), fit=round(f, 1),
                         hist=hist, minutes=round((time.time() - t1) / 60, 1))
        print(name, res[name], flush=True)
        if a.oracle:
            torch.manual_seed(a.seed)
            model = build_model(name, get_preset("cpu", pretrained=True, **json.loads(a.overrides)))
            train(model, tr, novel + base_all, a.steps, lr=a.lr, seed=a.seed)
            res[name + "_oracle"] = round(score(model_pred(model), te, novel_eps)[0], 1)
            print("oracle", res[name + "_oracle"], flush=True)
    res["minutes"] = round((time.time() - t0) / 60, 1)
    with open(ROOT / "log.jsonl", "a") as fh:
        fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
