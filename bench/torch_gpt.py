"""nanoGPT's model in idiomatic PyTorch: the reference fromzero's GPT is compared with.

The same architecture, parameter names and layouts as nanoGPT's model.py
(written here from its description, so tests and benchmarks need no
nanoGPT checkout):

    transformer.wte (vocab, C)   token embedding; lm_head shares it when tied
    transformer.wpe (T, C)       learned positions
    transformer.h.i: ln_1 → attn (c_attn: Linear(C, 3C) → causal SDPA → c_proj: Linear(C, C)) → +
                     ln_2 → mlp (c_fc: Linear(C, 4C) → GELU (exact) → c_proj: Linear(4C, C)) → +
    transformer.ln_f → lm_head: Linear(C, vocab, bias=False)

A torch Linear's weight is (out, in): c_attn.weight is (3C, C), its rows the
query, key and value projections in that order, each split into heads of
C / n_head columns. TorchGPT.train_step is nanoGPT's training iteration: AdamW
decaying matrices only, the gradient clipped to a global norm, the learning
rate set per step.
"""

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's own cannot drop only the bias)."""

    def __init__(self, dim, bias, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class CausalSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_head, self.dropout = c["n_head"], c["dropout"]
        self.c_attn = nn.Linear(c["n_embd"], 3 * c["n_embd"], bias=c["bias"])
        self.c_proj = nn.Linear(c["n_embd"], c["n_embd"], bias=c["bias"])
        self.resid_dropout = nn.Dropout(c["dropout"])

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c["n_embd"], 4 * c["n_embd"], bias=c["bias"])
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * c["n_embd"], c["n_embd"], bias=c["bias"])
        self.dropout = nn.Dropout(c["dropout"])

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = LayerNorm(c["n_embd"], c["bias"])
        self.attn = CausalSelfAttention(c)
        self.ln_2 = LayerNorm(c["n_embd"], c["bias"])
        self.mlp = MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """config: nanoGPT's GPTConfig fields as a dict (block_size, vocab_size,
    n_layer, n_head, n_embd, dropout, bias); tie: lm_head.weight is wte.weight."""

    def __init__(self, config, tie=True):
        super().__init__()
        c = self.config = dict(config)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c["vocab_size"], c["n_embd"]),
            wpe=nn.Embedding(c["block_size"], c["n_embd"]),
            drop=nn.Dropout(c["dropout"]),
            h=nn.ModuleList([Block(c) for _ in range(c["n_layer"])]),
            ln_f=LayerNorm(c["n_embd"], c["bias"])))
        self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
        if tie:
            self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx):
        t = idx.shape[1]
        pos = torch.arange(t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))

    def nanogpt_init(self):
        """nanoGPT's _init_weights: every Linear weight and Embedding N(0, 0.02²),
        biases 0, then each c_proj.weight (the projections into the residual
        stream) N(0, (0.02/√(2·n_layer))²); LayerNorm keeps γ = 1, β = 0."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.config["n_layer"]))

    def load_numpy(self, state):
        """Copy a dict of nanoGPT-named arrays (fz.models.gpt_to_nanogpt) into the weights."""
        own = self.state_dict()
        with torch.no_grad():
            for name, value in state.items():
                own[name].copy_(torch.from_numpy(np.asarray(value)))

    def numpy_state(self):
        return {k: v.detach().numpy().copy() for k, v in self.state_dict().items()}

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        """nanoGPT's eager loop: the whole (cropped) window recomputed per token."""
        for _ in range(max_new_tokens):
            window = idx[:, -self.config["block_size"]:]
            logits = self(window)[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = F.softmax(logits, dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, 1, generator=generator)), dim=1)
        return idx


class TorchGPTTrainer:
    """nanoGPT's training iteration on a GPT: AdamW (fused off, matrices decay),
    global gradient-norm clipping, the learning rate given per step."""

    def __init__(self, model, weight_decay=0.1, betas=(0.9, 0.99), eps=1e-8, clip=1.0):
        self.model, self.clip = model, clip
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=betas, eps=eps, foreach=False)

    def train_step(self, x, y, learning_rate):
        """One step on int64 tensors x, y (B, T); returns the loss."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        logits = self.model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        return loss.item()


def nanogpt_lr(it, learning_rate=1e-3, warmup_iters=100, lr_decay_iters=2000, min_lr=1e-4):
    """nanoGPT's get_lr (train.py today): linear warm-up from
    learning_rate/(warmup_iters + 1) at it = 0, then cosine decay to min_lr."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)
