#include "image.h"

#include <cmath>
#include <cstring>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include "stb_image.h"

namespace pmm {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS

double bicubic(double x) {  // Pillow's bicubic_filter, a = -0.5
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

struct Coeffs {
    int ksize = 0;
    std::vector<int> bounds;  // (first, count) per output
    std::vector<int32_t> k;   // ksize fixed-point coefficients per output
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc (src/libImaging/Resample.c).
Coeffs precompute(int in_size, int out_size) {
    const double scale = double(in_size) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 2.0 * filterscale;
    Coeffs c;
    c.ksize = int(std::ceil(support)) * 2 + 1;
    c.bounds.resize(size_t(out_size) * 2);
    c.k.assign(size_t(out_size) * c.ksize, 0);
    std::vector<double> w(size_t(c.ksize));
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = int(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = int(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            w[size_t(x)] = bicubic((x + xmin - center + 0.5) * ss);
            ww += w[size_t(x)];
        }
        for (int x = 0; x < xmax; ++x) {
            double v = ww != 0.0 ? w[size_t(x)] / ww : w[size_t(x)];
            double scaled = v * (1 << kPrecisionBits);
            c.k[size_t(xx) * c.ksize + x] = int32_t(v < 0 ? std::trunc(-0.5 + scaled) : std::trunc(0.5 + scaled));
        }
        c.bounds[size_t(xx) * 2] = xmin;
        c.bounds[size_t(xx) * 2 + 1] = xmax;
    }
    return c;
}

inline uint8_t clip8(int64_t ss) {
    int64_t v = ss >> kPrecisionBits;
    return uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}

std::vector<uint8_t> horizontal(const std::vector<uint8_t> & in, int w, int h, int out_w) {
    if (w == out_w) return in;
    Coeffs c = precompute(w, out_w);
    std::vector<uint8_t> out(size_t(out_w) * h * 3);
    for (int y = 0; y < h; ++y) {
        const uint8_t * row = &in[size_t(y) * w * 3];
        for (int xx = 0; xx < out_w; ++xx) {
            const int xmin = c.bounds[size_t(xx) * 2], xmax = c.bounds[size_t(xx) * 2 + 1];
            const int32_t * k = &c.k[size_t(xx) * c.ksize];
            for (int ch = 0; ch < 3; ++ch) {
                int64_t ss = int64_t(1) << (kPrecisionBits - 1);
                for (int x = 0; x < xmax; ++x) ss += int64_t(row[size_t(x + xmin) * 3 + ch]) * k[x];
                out[(size_t(y) * out_w + xx) * 3 + ch] = clip8(ss);
            }
        }
    }
    return out;
}

std::vector<uint8_t> vertical(const std::vector<uint8_t> & in, int w, int h, int out_h) {
    if (h == out_h) return in;
    Coeffs c = precompute(h, out_h);
    std::vector<uint8_t> out(size_t(w) * out_h * 3);
    const size_t stride = size_t(w) * 3;
    for (int yy = 0; yy < out_h; ++yy) {
        const int ymin = c.bounds[size_t(yy) * 2], ymax = c.bounds[size_t(yy) * 2 + 1];
        const int32_t * k = &c.k[size_t(yy) * c.ksize];
        for (size_t i = 0; i < stride; ++i) {
            int64_t ss = int64_t(1) << (kPrecisionBits - 1);
            for (int y = 0; y < ymax; ++y) ss += int64_t(in[size_t(y + ymin) * stride + i]) * k[y];
            out[size_t(yy) * stride + i] = clip8(ss);
        }
    }
    return out;
}

}  // namespace

std::vector<uint8_t> resize_bicubic_pil(const uint8_t * rgb, int w, int h, int out_w, int out_h, bool pillow13_order) {
    std::vector<uint8_t> img(rgb, rgb + size_t(w) * h * 3);
    // Pillow >= 13 runs the vertical pass first when the height shrinks by more than twice as many
    // pixels as the width (the rule paddle_mm.vision.transforms.resize_bicubic_pil copies).
    if (pillow13_order && h - out_h > 0 && h - out_h > (w - out_w) * 2) {
        return horizontal(vertical(img, w, h, out_h), w, out_h, out_w);
    }
    return vertical(horizontal(img, w, h, out_w), out_w, h, out_h);
}

void preprocess_rgb(const ImagePre & pre, const uint8_t * rgb, int w, int h, float * pixels) {
    const int s = pre.size;
    std::vector<uint8_t> resized = resize_bicubic_pil(rgb, w, h, s, s, pre.pillow13_order);
    float table[3][256];  // float32 operations in torchvision's order: (v / 255 - mean) / std
    for (int ch = 0; ch < 3; ++ch)
        for (int v = 0; v < 256; ++v) table[ch][v] = (float(v) / 255.0f - pre.mean[ch]) / pre.std[ch];
    for (int ch = 0; ch < 3; ++ch)
        for (size_t i = 0; i < size_t(s) * s; ++i) pixels[size_t(ch) * s * s + i] = table[ch][resized[i * 3 + ch]];
}

bool decode_image_file(const std::string & path, std::vector<uint8_t> & rgb, int & w, int & h, std::string & err) {
    int channels = 0;
    unsigned char * data = stbi_load(path.c_str(), &w, &h, &channels, 3);
    if (data == nullptr) {
        err = "cannot decode image " + path + ": " + (stbi_failure_reason() ? stbi_failure_reason() : "unknown error") +
              "; pass a JPEG, PNG, BMP, TGA or PNM file";
        return false;
    }
    rgb.assign(data, data + size_t(w) * h * 3);
    stbi_image_free(data);
    return true;
}

}  // namespace pmm
