// pmm-selftest: the SM3 and SM2 standard vectors (GB/T 32905, GB/T 32918.5 Annex A), the activation
// polynomials against the C library and, where the build has it, the packed GEMM against a double-precision
// product, on this build, so every cross target checks its own arithmetic under QEMU. Exit 0 when all pass.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
#include <algorithm>

#include "activation.h"
#include "gemm.h"
#include "sm.h"

namespace {

std::vector<uint8_t> unhex(const char * h) {
    std::vector<uint8_t> out;
    for (size_t i = 0; h[i] && h[i + 1]; i += 2) out.push_back(uint8_t(std::stoul(std::string(h + i, 2), nullptr, 16)));
    return out;
}

int check(const char * what, bool ok) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    return ok ? 0 : 1;
}

// Largest error of f against the double-precision reference over [lo, hi] (relative: divided by |ref|).
template <class F, class R>
double max_error(F f, R ref, float lo, float hi, bool relative) {
    double worst = 0;
    for (int i = 0; i <= 200000; ++i) {
        const float x = lo + (hi - lo) * float(i) / 200000.0f;
        const double want = ref(double(x)), err = std::fabs(double(f(x)) - want);
        worst = std::max(worst, relative ? err / std::fabs(want) : err);
    }
    return worst;
}

// The packed kernel against a double-precision act(x w^T + b) + residual over shapes that hit every edge: rows
// not a multiple of the tile or block height, inputs not a multiple of the block depth, more panels than one
// block, a column range that leaves the other columns alone. Largest error relative to sum |x w| + |b|.
double packed_gemm_error(int64_t rows, int64_t in, int64_t out, pmm::Act act, bool bias, bool residual) {
    const int64_t nr = pmm::packed_panel_width(), o0 = out > 2 * nr ? nr : 0, o1 = out;  // skip the first panel
    std::vector<float> x(rows * in), w(out * in), b(out), res(rows * out), y(rows * out, 7.0f);
    uint32_t state = 12345;
    auto next = [&] { return float(int32_t((state = state * 1664525u + 1013904223u) >> 8) - (1 << 23)) / float(1 << 23); };
    for (float & v : x) v = next();
    for (float & v : w) v = next() * 0.1f;
    for (float & v : b) v = next();
    for (float & v : res) v = next();
    std::vector<float> packed = w;
    pmm::pack_weight(packed.data(), in, out);
    pmm::gemm_packed(x.data(), packed.data(), bias ? b.data() : nullptr, residual ? res.data() : nullptr, y.data(), rows,
                     in, out, o0, o1, act);
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < out; ++o) {
            const float got = y[r * out + o];
            if (o < o0) {  // outside the range: untouched
                worst = std::max(worst, got == 7.0f ? 0.0 : 1.0);
                continue;
            }
            double sum = bias ? b[o] : 0.0, scale = std::fabs(sum);
            for (int64_t k = 0; k < in; ++k) sum += double(x[r * in + k]) * w[o * in + k], scale += std::fabs(double(x[r * in + k]) * w[o * in + k]);
            double want = sum;
            if (act == pmm::Act::quick_gelu) want = sum / (1.0 + std::exp(-1.702 * sum));
            if (act == pmm::Act::gelu_erf) want = 0.5 * sum * (1.0 + std::erf(sum / std::sqrt(2.0)));
            if (residual) want += res[r * out + o], scale += std::fabs(res[r * out + o]);
            worst = std::max(worst, std::fabs(got - want) / std::max(scale, 1.0));
        }
    return worst;
}

}  // namespace

int main() {
    int failed = 0;
    auto d = pmm::sm3("abc", 3);
    failed += check("SM3(\"abc\")", pmm::hex(d.data(), 32) == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
    std::string abcd;
    for (int i = 0; i < 16; ++i) abcd += "abcd";
    d = pmm::sm3(abcd.data(), abcd.size());
    failed += check("SM3(\"abcd\" x 16)", pmm::hex(d.data(), 32) == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732");
    pmm::Sm3 split;  // the same digest fed in odd pieces
    for (size_t i = 0; i < abcd.size(); i += 7) split.update(abcd.data() + i, std::min<size_t>(7, abcd.size() - i));
    d = split.digest();
    failed += check("SM3 streaming", pmm::hex(d.data(), 32) == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732");
    std::vector<uint8_t> pub = unhex("04"
                                     "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
                                     "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13");
    std::vector<uint8_t> r = unhex("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3");
    std::vector<uint8_t> s = unhex("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA");
    const char * msg = "message digest";
    failed += check("SM2 verify, GB/T 32918.5 example", pmm::sm2_verify_rs(pub, "1234567812345678", msg, std::strlen(msg), r.data(), s.data()));
    failed += check("SM2 refuses another message", !pmm::sm2_verify_rs(pub, "1234567812345678", "message digesT", 14, r.data(), s.data()));
    failed += check("SM2 refuses another user ID", !pmm::sm2_verify_rs(pub, "1234567812345679", msg, std::strlen(msg), r.data(), s.data()));
    s[31] ^= 1;
    failed += check("SM2 refuses a changed s", !pmm::sm2_verify_rs(pub, "1234567812345678", msg, std::strlen(msg), r.data(), s.data()));
    const double exp_err = max_error(pmm::exp_poly, [](double x) { return std::exp(x); }, -87.0f, 88.0f, true);
    failed += check("exp polynomial, relative error < 2e-7", exp_err < 2e-7);
    const double erf_err = max_error(pmm::erf_poly, [](double x) { return std::erf(x); }, -6.0f, 6.0f, false);
    failed += check("erf rational approximation, absolute error < 1e-6", erf_err < 1e-6);
    if (pmm::packed_gemm_available()) {
        const int64_t nr = pmm::packed_panel_width();
        double err = 0;
        for (int64_t rows : {1, 7, 13, 205})
            for (int64_t in : {5, 300, 768})
                err = std::max(err, packed_gemm_error(rows, in, 10 * nr, pmm::Act::none, true, false));
        failed += check("packed GEMM, relative error < 1e-6", err < 1e-6);
        err = std::max({packed_gemm_error(29, 520, 3 * nr, pmm::Act::quick_gelu, true, false),
                        packed_gemm_error(29, 520, 3 * nr, pmm::Act::gelu_erf, true, true),
                        packed_gemm_error(29, 64, nr, pmm::Act::none, false, true)});
        failed += check("packed GEMM with activation, bias and residual, error < 1e-6", err < 1e-6);
    }
    return failed ? 1 : 0;
}
