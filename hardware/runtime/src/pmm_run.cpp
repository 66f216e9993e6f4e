// pmm-run: Chinese-CLIP on a board. Prints image-text similarities, or writes embeddings as .npy.
//
//   pmm-run --model m.gguf --image a.jpg b.png --text 一只猫 一只狗
//   pmm-run --model m.gguf --image a.jpg --text 一只猫 --npy out/   # image_features.npy, text_features.npy,
//                                                                   # pixels.npy, ids.npy
// Exit codes: 0 ok, 2 usage, 3 model, 4 input, 5 verification (signed package refused), 6 compute.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "npy.h"
#include "pmm.h"
#include "verify.h"

namespace {

const char * kUsage =
    "usage: pmm-run --model M.gguf\n"
    "               [--image FILE...] [--text TEXT...] [--text-file F] [--pixels X.npy] [--ids X.npy]\n"
    "               [--npy OUT_DIR] [--threads N] [--repeat N]\n"
    "  --package/--trust  verify a signed paddle_mm package (SM2 signature, SM3 of every chunk, exact file set)\n"
    "                     before loading anything; --model is then a path inside the package\n"
    "  --text-file        UTF-8 file, one text per line (added after the --text ones)\n"
    "  --pixels/--ids     pre-processed inputs (float32 [N,3,S,S], int64 [N,context_length]) instead of files/texts\n"
    "  --npy              write image_features.npy, text_features.npy (unnormalised), pixels.npy, ids.npy\n"
    "  --repeat           run the towers N times and print the time per batch (benchmarks)\n";

struct Args {
    std::string model, package, trust, expect_model, user_id = "1234567812345678", pixels_npy, ids_npy, npy_dir, text_file;
    std::vector<std::string> images, texts;
    int threads = 0, repeat = 0;
};

int usage_error(const std::string & msg) {
    std::fprintf(stderr, "error: %s\n%s", msg.c_str(), kUsage);
    return PMM_EUSAGE;
}

bool parse(int argc, char ** argv, Args & a, std::string & err) {
    std::vector<std::string> * list = nullptr;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&](std::string & out) {
            if (i + 1 >= argc) return false;
            out = argv[++i];
            return true;
        };
        std::string number;
        if (arg == "--image") list = &a.images;
        else if (arg == "--text") list = &a.texts;
        else if (arg == "--model" && value(a.model)) list = nullptr;
        else if (arg == "--pixels" && value(a.pixels_npy)) list = nullptr;
        else if (arg == "--ids" && value(a.ids_npy)) list = nullptr;
        else if (arg == "--npy" && value(a.npy_dir)) list = nullptr;
        else if (arg == "--package" && value(a.package)) list = nullptr;
        else if (arg == "--trust" && value(a.trust)) list = nullptr;
        else if (arg == "--expect-model" && value(a.expect_model)) list = nullptr;
        else if (arg == "--user-id" && value(a.user_id)) list = nullptr;
        else if (arg == "--text-file" && value(a.text_file)) list = nullptr;
        else if ((arg == "--threads" || arg == "--repeat") && value(number)) {
            (arg == "--threads" ? a.threads : a.repeat) = std::atoi(number.c_str());
            list = nullptr;
        } else if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (list && arg.rfind("--", 0) != 0) list->push_back(arg);
        else {
            err = "unknown or incomplete option " + arg;
            return false;
        }
    }
    if (!a.text_file.empty()) {
        FILE * f = std::fopen(a.text_file.c_str(), "rb");
        if (!f) {
            err = "cannot open --text-file " + a.text_file;
            return false;
        }
        std::string line;
        for (int c; (c = std::fgetc(f)) != EOF;) {
            if (c == '\n') a.texts.push_back(line), line.clear();
            else line.push_back(char(c));
        }
        if (!line.empty()) a.texts.push_back(line);
        std::fclose(f);
    }
    if (a.model.empty()) err = "--model is required";
    else if (a.package.empty() != a.trust.empty()) err = "--package and --trust go together";
    else if (a.images.empty() && a.texts.empty() && a.pixels_npy.empty() && a.ids_npy.empty() && a.text_file.empty()) err = "give --image and/or --text";
    return err.empty();
}

std::vector<float> l2_normalized(const std::vector<float> & f, int n, int d) {
    std::vector<float> out(f);
    for (int i = 0; i < n; ++i) {
        double s = 0;
        for (int j = 0; j < d; ++j) s += double(f[size_t(i) * d + j]) * f[size_t(i) * d + j];
        const float inv = float(1.0 / std::max(std::sqrt(s), 1e-12));
        for (int j = 0; j < d; ++j) out[size_t(i) * d + j] *= inv;
    }
    return out;
}

void print_similarities(const Args & a, const std::vector<float> & img, const std::vector<float> & txt, int ni, int nt,
                        int d, float scale) {
    std::vector<float> ui = l2_normalized(img, ni, d), ut = l2_normalized(txt, nt, d);
    for (int i = 0; i < ni; ++i) {
        std::vector<double> logits(static_cast<size_t>(nt));
        double mx = -1e30, sum = 0;
        for (int t = 0; t < nt; ++t) {
            double c = 0;
            for (int j = 0; j < d; ++j) c += double(ui[size_t(i) * d + j]) * ut[size_t(t) * d + j];
            logits[size_t(t)] = c;
            mx = std::max(mx, c * scale);
        }
        for (int t = 0; t < nt; ++t) sum += std::exp(logits[size_t(t)] * scale - mx);
        const std::string name = i < int(a.images.size()) ? a.images[size_t(i)] : "pixels[" + std::to_string(i) + "]";
        for (int t = 0; t < nt; ++t) {
            const std::string text = t < int(a.texts.size()) ? a.texts[size_t(t)] : "ids[" + std::to_string(t) + "]";
            std::printf("%s\t%s\tcosine %.4f\tprob %.4f\n", name.c_str(), text.c_str(), logits[size_t(t)],
                        std::exp(logits[size_t(t)] * scale - mx) / sum);
        }
    }
}

template <class F>
double time_ms(int repeat, F f) {
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < repeat; ++r) f();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / repeat;
}

}  // namespace

int main(int argc, char ** argv) {
    Args a;
    std::string err;
    if (!parse(argc, argv, a, err)) return usage_error(err);
    std::string model_path = a.model;
    if (!a.package.empty()) {
        pmm::VerifyResult v = pmm::verify_package(a.package, a.trust, a.expect_model, a.user_id);
        if (!v.ok) {
            std::fprintf(stderr, "error: package %s refused: %s\n", a.package.c_str(), v.message.c_str());
            return PMM_EVERIFY;
        }
        if (!v.covers(a.model)) {
            std::fprintf(stderr, "error: %s is not a file of the signed package %s; pass a path listed in its manifest\n",
                         a.model.c_str(), a.package.c_str());
            return PMM_EVERIFY;
        }
        model_path = a.package + "/" + a.model;
        std::fprintf(stderr, "verified package %s (model %s, version %s, %zu files)\n", a.package.c_str(),
                     v.model.c_str(), v.version.c_str(), v.paths.size());
    }
    char lerr[512] = {0};
    pmm_model * m = pmm_load(model_path.c_str(), a.threads, lerr, sizeof lerr);
    if (!m) {
        std::fprintf(stderr, "error: %s\n", lerr);
        return PMM_EMODEL;
    }
    const int S = pmm_image_size(m), C = pmm_context_length(m), D = pmm_embed_dim(m);
    std::vector<float> pixels;
    std::vector<int64_t> ids;
    int ni = 0, nt = 0, rc = PMM_OK;
    std::vector<int64_t> shape;
    std::vector<char> bytes;
    if (!a.pixels_npy.empty()) {
        if (!pmm::read_npy(a.pixels_npy, "<f4", shape, bytes, err)) return std::fprintf(stderr, "error: %s\n", err.c_str()), PMM_EINPUT;
        if (shape.size() != 4 || shape[1] != 3 || shape[2] != S || shape[3] != S)
            return std::fprintf(stderr, "error: %s must be float32 [N, 3, %d, %d]\n", a.pixels_npy.c_str(), S, S), PMM_EINPUT;
        pixels.assign(reinterpret_cast<float *>(bytes.data()), reinterpret_cast<float *>(bytes.data()) + bytes.size() / 4);
        ni = int(shape[0]);
    }
    for (const std::string & image : a.images) {
        pixels.resize(size_t(ni + 1) * 3 * S * S);
        if ((rc = pmm_preprocess_file(m, image.c_str(), &pixels[size_t(ni) * 3 * S * S]))) {
            std::fprintf(stderr, "error: %s\n", pmm_last_error(m));
            pmm_free(m);
            return rc;
        }
        ++ni;
    }
    if (!a.ids_npy.empty()) {
        if (!pmm::read_npy(a.ids_npy, "<i8", shape, bytes, err)) return std::fprintf(stderr, "error: %s\n", err.c_str()), PMM_EINPUT;
        if (shape.size() != 2 || shape[1] != C)
            return std::fprintf(stderr, "error: %s must be int64 [N, %d]\n", a.ids_npy.c_str(), C), PMM_EINPUT;
        ids.assign(reinterpret_cast<int64_t *>(bytes.data()), reinterpret_cast<int64_t *>(bytes.data()) + bytes.size() / 8);
        nt = int(shape[0]);
    }
    for (const std::string & text : a.texts) {
        ids.resize(size_t(nt + 1) * C);
        pmm_tokenize(m, text.data(), text.size(), &ids[size_t(nt) * C]);
        ++nt;
    }
    std::vector<float> img(size_t(ni) * D), txt(size_t(nt) * D);
    if (ni && (rc = pmm_encode_images(m, pixels.data(), ni, img.data()))) goto fail;
    if (nt && (rc = pmm_encode_texts(m, ids.data(), nt, txt.data()))) goto fail;
    if (a.repeat > 0) {
        if (ni) std::printf("image_ms_per_batch\t%d\t%.3f\n", ni, time_ms(a.repeat, [&] { pmm_encode_images(m, pixels.data(), ni, img.data()); }));
        if (nt) std::printf("text_ms_per_batch\t%d\t%.3f\n", nt, time_ms(a.repeat, [&] { pmm_encode_texts(m, ids.data(), nt, txt.data()); }));
    }
    if (!a.npy_dir.empty()) {
        const std::string d = a.npy_dir + "/";
        bool ok = true;
        if (ni) ok = pmm::write_npy(d + "image_features.npy", "<f4", 4, img.data(), {ni, D}, err) &&
                     pmm::write_npy(d + "pixels.npy", "<f4", 4, pixels.data(), {ni, 3, S, S}, err);
        if (ok && nt) ok = pmm::write_npy(d + "text_features.npy", "<f4", 4, txt.data(), {nt, D}, err) &&
                           pmm::write_npy(d + "ids.npy", "<i8", 8, ids.data(), {nt, C}, err);
        if (!ok) {
            std::fprintf(stderr, "error: %s\n", err.c_str());
            pmm_free(m);
            return PMM_EUSAGE;
        }
    } else if (ni && nt && a.repeat == 0) {
        print_similarities(a, img, txt, ni, nt, D, pmm_logit_scale(m));
    }
    pmm_free(m);
    return PMM_OK;
fail:
    std::fprintf(stderr, "error: %s\n", pmm_last_error(m));
    pmm_free(m);
    return rc;
}
