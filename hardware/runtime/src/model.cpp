// The Chinese-CLIP towers as ggml graphs, loaded from a paddle_mm GGUF (tools/export_gguf.py).
//
// Layouts follow ggml: a tensor's ne[0] is its innermost (contiguous) dimension, so the shape comments
// read innermost first, e.g. [W, T, B] = width x tokens x batch. Linear weights are stored (out, in),
// so ggml_mul_mat(w [in, out], x [in, ...]) -> [out, ...].
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include <algorithm>
#include <cstdlib>
#include <unordered_set>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "gguf.h"
#include "activation.h"
#include "gemm.h"
#include "image.h"
#include "pmm.h"
#include "text.h"

namespace {

constexpr uint32_t kFormatVersion = 1;  // paddle_mm/export/gguf_export.py GGUF_VERSION
// cn_clip adds -10000 to the scores of padded keys; exp(-10000 + score - max) is exactly 0 in f32 for any
// score these towers produce, so -inf gives the same softmax and lets flash attention skip those keys.
constexpr float kPadKeyMask = -INFINITY;

struct Hparams {
    int embed_dim, image_resolution, vision_layers, vision_width, vision_head_width, vision_patch_size;
    int text_hidden, text_layers, text_heads, text_intermediate, context_length, pad_id;
    float logit_scale;
};

}  // namespace

struct pmm_model {
    Hparams hp{};
    pmm::ImagePre pre;
    pmm::Tokenizer tokenizer;
    ggml_context * ctx_w = nullptr;
    ggml_backend_t backend = nullptr;
    ggml_backend_buffer_t weights = nullptr;
    ggml_gallocr_t alloc = nullptr;
    std::unordered_set<const ggml_tensor *> packed;  // linear weights re-ordered for pmm::linear_packed
    std::string error;

    ggml_tensor * w(const std::string & name) const { return ggml_get_tensor(ctx_w, name.c_str()); }
    int fail(int code, std::string message) {
        error = std::move(message);
        return code;
    }
    ~pmm_model() {
        if (alloc) ggml_gallocr_free(alloc);
        if (weights) ggml_backend_buffer_free(weights);
        if (backend) ggml_backend_free(backend);
        if (ctx_w) ggml_free(ctx_w);
    }
};

namespace {

struct GgufReader {
    gguf_context * g;
    std::string path, missing;

    int64_t key(const char * name) {
        int64_t id = gguf_find_key(g, name);
        if (id < 0 && missing.empty()) missing = name;
        return id;
    }
    uint32_t u32(const char * name) {
        int64_t id = key(name);
        return id < 0 ? 0 : gguf_get_val_u32(g, id);
    }
    std::vector<uint32_t> u32s(const char * name) {
        int64_t id = key(name);
        if (id < 0) return {};
        const uint32_t * p = static_cast<const uint32_t *>(gguf_get_arr_data(g, id));
        return std::vector<uint32_t>(p, p + gguf_get_arr_n(g, id));
    }
    std::vector<float> f32s(const char * name) {
        int64_t id = key(name);
        if (id < 0) return {};
        const float * p = static_cast<const float *>(gguf_get_arr_data(g, id));
        return std::vector<float>(p, p + gguf_get_arr_n(g, id));
    }
    std::vector<std::string> strs(const char * name) {
        int64_t id = key(name);
        std::vector<std::string> out;
        if (id < 0) return out;
        for (size_t i = 0, n = gguf_get_arr_n(g, id); i < n; ++i) out.emplace_back(gguf_get_arr_str(g, id, i));
        return out;
    }
};

bool read_hparams(GgufReader & r, pmm_model & m) {
    Hparams & h = m.hp;
    h.embed_dim = int(r.u32("pmm.embed_dim"));
    h.image_resolution = int(r.u32("pmm.image_resolution"));
    h.vision_layers = int(r.u32("pmm.vision_layers"));
    h.vision_width = int(r.u32("pmm.vision_width"));
    h.vision_head_width = int(r.u32("pmm.vision_head_width"));
    h.vision_patch_size = int(r.u32("pmm.vision_patch_size"));
    h.text_hidden = int(r.u32("pmm.text_hidden_size"));
    h.text_layers = int(r.u32("pmm.text_num_hidden_layers"));
    h.text_heads = int(r.u32("pmm.text_num_attention_heads"));
    h.text_intermediate = int(r.u32("pmm.text_intermediate_size"));
    h.context_length = int(r.u32("pmm.context_length"));
    h.pad_id = int(r.u32("pmm.pad_id"));
    int64_t ls = r.key("pmm.logit_scale");
    h.logit_scale = ls < 0 ? 0.0f : gguf_get_val_f32(r.g, ls);
    m.pre.size = int(r.u32("pmm.image.size"));
    std::vector<float> mean = r.f32s("pmm.image.mean"), sd = r.f32s("pmm.image.std");
    for (int c = 0; c < 3 && mean.size() == 3 && sd.size() == 3; ++c) m.pre.mean[c] = mean[c], m.pre.std[c] = sd[c];
    int64_t interp = r.key("pmm.image.interpolation");
    m.pre.pillow13_order = interp < 0 || std::string(gguf_get_val_str(r.g, interp)) != "pil12_bicubic";
    std::vector<std::string> tokens = r.strs("pmm.tokenizer.tokens"), fold_to = r.strs("pmm.tokenizer.fold_to");
    std::vector<uint32_t> ranges = r.u32s("pmm.tokenizer.char_ranges"), fold_from = r.u32s("pmm.tokenizer.fold_from");
    int pad = int(r.u32("pmm.tokenizer.pad_id")), unk = int(r.u32("pmm.tokenizer.unk_id"));
    int cls = int(r.u32("pmm.tokenizer.cls_id")), sep = int(r.u32("pmm.tokenizer.sep_id"));
    if (!r.missing.empty()) return false;
    m.tokenizer.init(std::move(tokens), std::move(ranges), fold_from, fold_to, h.context_length, pad, unk, cls, sep);
    return true;
}

// Read every tensor's bytes from the file into the backend buffer.
bool read_tensors(const std::string & path, gguf_context * g, pmm_model & m, std::string & err) {
    FILE * f = std::fopen(path.c_str(), "rb");
    if (!f) {
        err = "cannot open " + path;
        return false;
    }
    std::vector<char> buf;
    const size_t base = gguf_get_data_offset(g);
    bool ok = true;
    for (int64_t i = 0; i < gguf_get_n_tensors(g) && ok; ++i) {
        ggml_tensor * t = ggml_get_tensor(m.ctx_w, gguf_get_tensor_name(g, i));
        const size_t n = ggml_nbytes(t);
        buf.resize(n);
        ok = std::fseek(f, long(base + gguf_get_tensor_offset(g, i)), SEEK_SET) == 0 && std::fread(buf.data(), 1, n, f) == n;
        if (ok) ggml_backend_tensor_set(t, buf.data(), 0, n);
        else err = path + ": truncated at tensor " + gguf_get_tensor_name(g, i) + "; convert the model again";
    }
    std::fclose(f);
    return ok;
}

ggml_tensor * layer_norm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, ggml_tensor * b, float eps) {
    return ggml_add(ctx, ggml_mul(ctx, ggml_norm(ctx, x, eps), w), b);
}

// y = act(w x + b) + residual, [out, rows]: one pass of the packed kernel for a weight packed at load, else
// ggml's product, then the bias with the activation, then the residual. b and residual may be null.
ggml_tensor * linear(const pmm_model & m, ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, ggml_tensor * b,
                     pmm::Act act = pmm::Act::none, ggml_tensor * residual = nullptr) {
    if (m.packed.count(w)) return pmm::linear_packed(ctx, x, w, b, act, residual);
    ggml_tensor * y = ggml_mul_mat(ctx, w, x);
    if (act == pmm::Act::quick_gelu) y = pmm::bias_quick_gelu(ctx, y, b);
    else if (act == pmm::Act::gelu_erf) y = pmm::bias_gelu_erf(ctx, y, b);
    else if (b) y = ggml_add(ctx, y, b);
    return residual ? ggml_add(ctx, residual, y) : y;
}

// Multi-head self-attention over x [D, T*B] (B sequences of T tokens) with a packed qkv projection; mask
// [T_k, T_q, 1, B] (f16) or null. ggml_flash_attn_ext reads q, k and v as strided views of the projection (no
// copies), keeps scores and softmax in f32 and writes heads side by side, as Paddle's transpose + reshape does.
ggml_tensor * attention(const pmm_model & m, ggml_context * ctx, ggml_tensor * x, int64_t T, int64_t B,
                        const std::string & p, ggml_tensor * mask, int n_head) {
    const int64_t D = x->ne[0], hd = D / n_head;
    ggml_tensor * qkv = linear(m, ctx, x, m.w(p + "qkv.w"), m.w(p + "qkv.b"));  // [3D, T*B]
    auto part = [&](int i) {  // [hd, T, nh, B] view of q (0), k (1) or v (2); each row of hd floats is contiguous
        return ggml_view_4d(ctx, qkv, hd, T, n_head, B, qkv->nb[1], size_t(hd) * sizeof(float), T * qkv->nb[1],
                            size_t(i) * D * sizeof(float));
    };
    // [hd, nh, T, B]; on the CPU backend every precision setting accumulates in f32
    ggml_tensor * out = ggml_flash_attn_ext(ctx, part(0), part(1), part(2), mask, 1.0f / std::sqrt(float(hd)), 0.0f, 0.0f);
    return ggml_reshape_2d(ctx, out, D, T * B);  // [D, T*B]
}

struct Graph {
    ggml_context * ctx = nullptr;
    ggml_cgraph * gf = nullptr;
    explicit Graph(size_t nodes) {
        ggml_init_params p = {ggml_tensor_overhead() * nodes + ggml_graph_overhead_custom(nodes, false), nullptr, true};
        ctx = ggml_init(p);
        gf = ggml_new_graph_custom(ctx, nodes, false);
    }
    ~Graph() { ggml_free(ctx); }
};

int run(pmm_model * m, Graph & g, ggml_tensor * out) {
    ggml_build_forward_expand(g.gf, out);
    if (!ggml_gallocr_alloc_graph(m->alloc, g.gf)) return m->fail(PMM_ECOMPUTE, "ggml could not allocate the graph's memory");
    return PMM_OK;
}

// Every tensor the graphs use; a file missing one is refused at load, not at the first inference.
std::string missing_tensor(const pmm_model & m) {
    std::vector<std::string> names = {"v.patch_embd", "v.class_embd", "v.pos_embd", "v.ln_pre.w", "v.ln_pre.b",
                                      "v.ln_post.w", "v.ln_post.b", "v.proj", "t.tok_embd", "t.pos_embd",
                                      "t.type_embd", "t.ln_embd.w", "t.ln_embd.b", "t.proj"};
    const char * block[] = {"qkv.w", "qkv.b", "out.w", "out.b", "ln1.w", "ln1.b", "ln2.w", "ln2.b", "fc.w", "fc.b", "proj.w", "proj.b"};
    for (int i = 0; i < m.hp.vision_layers; ++i)
        for (const char * b : block) names.push_back("v." + std::to_string(i) + "." + b);
    for (int i = 0; i < m.hp.text_layers; ++i)
        for (const char * b : block) names.push_back("t." + std::to_string(i) + "." + b);
    for (const std::string & n : names)
        if (!m.w(n)) return n;
    return "";
}

// Re-order the towers' linear weights for the packed kernel, once, where this build has it (src/gemm.cpp).
// PMM_GEMM=ggml keeps ggml's own product (benchmarks/bench_board_runtime.py times both).
void pack_linear_weights(pmm_model & m) {
    const char * choice = std::getenv("PMM_GEMM");
    if (!pmm::packed_gemm_available() || (choice && std::string(choice) == "ggml")) return;
    std::vector<std::string> names = {"v.patch_embd"};
    for (const char * tower : {"v.", "t."})
        for (int i = 0, n = tower[0] == 'v' ? m.hp.vision_layers : m.hp.text_layers; i < n; ++i)
            for (const char * part : {"qkv.w", "out.w", "fc.w", "proj.w"}) names.push_back(tower + std::to_string(i) + "." + part);
    for (const std::string & name : names) {
        ggml_tensor * t = m.w(name);
        if (!pmm::packable(t->ne[1])) continue;
        pmm::pack_weight(static_cast<float *>(t->data), t->ne[0], t->ne[1]);
        m.packed.insert(t);
    }
}

void quiet_log(ggml_log_level, const char *, void *) {}  // pmm reports its own one-line errors

}  // namespace

extern "C" {

pmm_model * pmm_load(const char * gguf_path, int n_threads, char * err, size_t err_len) {
    auto report = [&](const std::string & msg) -> pmm_model * {
        if (err && err_len) std::snprintf(err, err_len, "%s", msg.c_str());
        return nullptr;
    };
    ggml_log_set(quiet_log, nullptr);
    auto m = std::make_unique<pmm_model>();
    gguf_init_params params = {true, &m->ctx_w};
    gguf_context * g = gguf_init_from_file(gguf_path, params);
    if (!g) return report(std::string("cannot read ") + gguf_path + " as GGUF; convert the model with tools/export_gguf.py");
    GgufReader r{g, gguf_path, {}};
    int64_t arch = gguf_find_key(g, "general.architecture");
    if (arch < 0 || std::string(gguf_get_val_str(g, arch)) != "pmm-chinese-clip") {
        gguf_free(g);
        return report(std::string(gguf_path) + " is not a paddle_mm Chinese-CLIP GGUF; convert with tools/export_gguf.py");
    }
    uint32_t version = r.u32("pmm.format_version");
    if (version != kFormatVersion) {
        gguf_free(g);
        return report(std::string(gguf_path) + ": format version " + std::to_string(version) + ", this runtime reads " +
                      std::to_string(kFormatVersion) + "; convert the model again with this paddle_mm");
    }
    if (!read_hparams(r, *m)) {
        gguf_free(g);
        return report(std::string(gguf_path) + " lacks key " + r.missing + "; convert the model again");
    }
    const std::string missing = missing_tensor(*m);
    if (!missing.empty()) {
        gguf_free(g);
        return report(std::string(gguf_path) + " lacks tensor " + missing + "; convert the model again");
    }
    m->backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(m->backend, n_threads > 0 ? n_threads : int(std::max(1u, std::thread::hardware_concurrency())));
    m->weights = ggml_backend_alloc_ctx_tensors(m->ctx_w, m->backend);
    std::string msg;
    bool ok = m->weights && read_tensors(gguf_path, g, *m, msg);
    gguf_free(g);
    if (!ok) return report(msg.empty() ? "cannot allocate the model's weights" : msg);
    pack_linear_weights(*m);
    m->alloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(m->backend));
    return m.release();
}

void pmm_free(pmm_model * model) { delete model; }
const char * pmm_last_error(const pmm_model * model) { return model ? model->error.c_str() : "no model"; }
int pmm_embed_dim(const pmm_model * model) { return model->hp.embed_dim; }
int pmm_image_size(const pmm_model * model) { return model->pre.size; }
int pmm_context_length(const pmm_model * model) { return model->hp.context_length; }
float pmm_logit_scale(const pmm_model * model) { return std::exp(model->hp.logit_scale); }

int pmm_tokenize(pmm_model * model, const char * utf8_text, size_t len, int64_t * ids) {
    std::vector<int64_t> out = model->tokenizer.encode(utf8_text ? std::string(utf8_text, len) : std::string());
    std::memcpy(ids, out.data(), out.size() * sizeof(int64_t));
    return PMM_OK;
}

int pmm_preprocess_rgb(pmm_model * model, const uint8_t * rgb, int width, int height, float * pixels) {
    if (width < 1 || height < 1) return model->fail(PMM_EUSAGE, "image size must be positive");
    pmm::preprocess_rgb(model->pre, rgb, width, height, pixels);
    return PMM_OK;
}

int pmm_preprocess_file(pmm_model * model, const char * path, float * pixels) {
    std::vector<uint8_t> rgb;
    int w = 0, h = 0;
    std::string err;
    if (!pmm::decode_image_file(path, rgb, w, h, err)) return model->fail(PMM_EINPUT, err);
    return pmm_preprocess_rgb(model, rgb.data(), w, h, pixels);
}

int pmm_encode_images(pmm_model * m, const float * pixels, int n, float * features) {
    const Hparams & h = m->hp;
    if (n < 1) return m->fail(PMM_EUSAGE, "need at least one image");
    const int S = h.image_resolution, P = h.vision_patch_size, G = S / P, W = h.vision_width;
    const int64_t Np = int64_t(G) * G, T = Np + 1, K = 3LL * P * P;
    Graph g(size_t(64 + 48 * h.vision_layers));
    ggml_context * ctx = g.ctx;
    // Activations stay 2-D, [width, tokens of all images]: every linear layer is one matrix product over the
    // whole batch (ggml would otherwise run one product per image, streaming the weights once per image).
    ggml_tensor * patches = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, Np * n);  // [3*P*P, G*G*B]
    ggml_set_input(patches);
    ggml_tensor * x = linear(*m, ctx, patches, m->w("v.patch_embd"), nullptr);  // [W, G*G*B]
    ggml_tensor * cls = ggml_repeat_4d(ctx, ggml_reshape_3d(ctx, m->w("v.class_embd"), W, 1, 1), W, 1, n, 1);
    x = ggml_concat(ctx, cls, ggml_reshape_3d(ctx, x, W, Np, n), 1);             // [W, T, B]
    x = ggml_reshape_2d(ctx, ggml_add(ctx, x, m->w("v.pos_embd")), W, T * n);   // [W, T*B]
    x = layer_norm(ctx, x, m->w("v.ln_pre.w"), m->w("v.ln_pre.b"), 1e-5f);
    const int heads = W / h.vision_head_width;
    for (int i = 0; i < h.vision_layers; ++i) {
        const std::string p = "v." + std::to_string(i) + ".";
        ggml_tensor * y = layer_norm(ctx, x, m->w(p + "ln1.w"), m->w(p + "ln1.b"), 1e-5f);
        y = attention(*m, ctx, y, T, n, p, nullptr, heads);
        x = linear(*m, ctx, y, m->w(p + "out.w"), m->w(p + "out.b"), pmm::Act::none, x);  // + residual
        y = layer_norm(ctx, x, m->w(p + "ln2.w"), m->w(p + "ln2.b"), 1e-5f);
        y = linear(*m, ctx, y, m->w(p + "fc.w"), m->w(p + "fc.b"), pmm::Act::quick_gelu);
        x = linear(*m, ctx, y, m->w(p + "proj.w"), m->w(p + "proj.b"), pmm::Act::none, x);
    }
    ggml_tensor * first = ggml_cont(ctx, ggml_view_2d(ctx, x, W, n, T * x->nb[1], 0));  // [W, B]: class tokens
    first = layer_norm(ctx, first, m->w("v.ln_post.w"), m->w("v.ln_post.b"), 1e-5f);
    ggml_tensor * out = ggml_mul_mat(ctx, m->w("v.proj"), first);                       // [E, B]
    ggml_set_output(out);
    if (int rc = run(m, g, out)) return rc;
    // im2col: patches[b][py*G+px][c*P*P + ky*P + kx] = pixels[b][c][py*P+ky][px*P+kx]
    std::vector<float> col(size_t(K) * Np * n);
    for (int b = 0; b < n; ++b)
        for (int py = 0; py < G; ++py)
            for (int px = 0; px < G; ++px) {
                float * dst = &col[(size_t(b) * Np + size_t(py) * G + px) * K];
                for (int c = 0; c < 3; ++c)
                    for (int ky = 0; ky < P; ++ky)
                        std::memcpy(dst + (c * P + ky) * P,
                                    pixels + ((size_t(b) * 3 + c) * S + size_t(py) * P + ky) * S + size_t(px) * P,
                                    size_t(P) * sizeof(float));
            }
    ggml_backend_tensor_set(patches, col.data(), 0, ggml_nbytes(patches));
    if (ggml_backend_graph_compute(m->backend, g.gf) != GGML_STATUS_SUCCESS) return m->fail(PMM_ECOMPUTE, "ggml compute failed");
    ggml_backend_tensor_get(out, features, 0, ggml_nbytes(out));
    return PMM_OK;
}

int pmm_encode_texts(pmm_model * m, const int64_t * ids, int n, float * features) {
    const Hparams & h = m->hp;
    if (n < 1) return m->fail(PMM_EUSAGE, "need at least one text");
    const int C = h.context_length, H = h.text_hidden;
    // Columns that are padding in every row change nothing (padded keys are masked): drop them.
    int L = 1;
    for (int b = 0; b < n; ++b)
        for (int t = 0; t < C; ++t)
            if (ids[size_t(b) * C + t] != h.pad_id && t + 1 > L) L = t + 1;
    std::vector<int32_t> tok(size_t(L) * n);
    std::vector<ggml_fp16_t> mask(size_t(L) * L * n);  // f16: what ggml_flash_attn_ext reads
    const ggml_fp16_t keep = ggml_fp32_to_fp16(0.0f), drop = ggml_fp32_to_fp16(kPadKeyMask);
    for (int b = 0; b < n; ++b)
        for (int t = 0; t < L; ++t) {
            int64_t id = ids[size_t(b) * C + t];
            if (id < 0 || id >= m->w("t.tok_embd")->ne[1])
                return m->fail(PMM_EUSAGE, "token id " + std::to_string(id) + " is outside the vocabulary; use pmm_tokenize");
            tok[size_t(b) * L + t] = int32_t(id);
            for (int q = 0; q < L; ++q) mask[(size_t(b) * L + q) * L + t] = id == h.pad_id ? drop : keep;
        }
    Graph g(size_t(64 + 48 * h.text_layers));
    ggml_context * ctx = g.ctx;
    ggml_tensor * in_ids = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, int64_t(L) * n);
    ggml_tensor * in_mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, L, L, 1, n);  // [T_k, T_q, 1, B]
    ggml_set_input(in_ids);
    ggml_set_input(in_mask);
    ggml_tensor * x = ggml_get_rows(ctx, m->w("t.tok_embd"), in_ids);  // [H, L*B]: 2-D, as in the image tower
    ggml_tensor * pos = m->w("t.pos_embd");
    x = ggml_add(ctx, x, ggml_view_2d(ctx, pos, H, L, pos->nb[1], 0));  // broadcast: row r gets position r % L
    x = ggml_add(ctx, x, m->w("t.type_embd"));
    x = layer_norm(ctx, x, m->w("t.ln_embd.w"), m->w("t.ln_embd.b"), 1e-12f);
    for (int i = 0; i < h.text_layers; ++i) {
        const std::string p = "t." + std::to_string(i) + ".";
        ggml_tensor * y = attention(*m, ctx, x, L, n, p, in_mask, h.text_heads);
        y = linear(*m, ctx, y, m->w(p + "out.w"), m->w(p + "out.b"), pmm::Act::none, x);  // + residual
        x = layer_norm(ctx, y, m->w(p + "ln1.w"), m->w(p + "ln1.b"), 1e-12f);
        y = linear(*m, ctx, x, m->w(p + "fc.w"), m->w(p + "fc.b"), pmm::Act::gelu_erf);
        y = linear(*m, ctx, y, m->w(p + "proj.w"), m->w(p + "proj.b"), pmm::Act::none, x);
        x = layer_norm(ctx, y, m->w(p + "ln2.w"), m->w(p + "ln2.b"), 1e-12f);
    }
    ggml_tensor * first = ggml_cont(ctx, ggml_view_2d(ctx, x, H, n, L * x->nb[1], 0));  // [H, B]: [CLS]
    ggml_tensor * out = ggml_mul_mat(ctx, m->w("t.proj"), first);                   // [E, B]
    ggml_set_output(out);
    if (int rc = run(m, g, out)) return rc;
    ggml_backend_tensor_set(in_ids, tok.data(), 0, ggml_nbytes(in_ids));
    ggml_backend_tensor_set(in_mask, mask.data(), 0, ggml_nbytes(in_mask));
    if (ggml_backend_graph_compute(m->backend, g.gf) != GGML_STATUS_SUCCESS) return m->fail(PMM_ECOMPUTE, "ggml compute failed");
    ggml_backend_tensor_get(out, features, 0, ggml_nbytes(out));
    return PMM_OK;
}

}  // extern "C"
