#include <algorithm>
#include <cstring>

#include "sm.h"

namespace pmm {
namespace {

inline uint32_t rotl(uint32_t x, int n) { return n == 0 ? x : (x << n) | (x >> (32 - n)); }
inline uint32_t p0(uint32_t x) { return x ^ rotl(x, 9) ^ rotl(x, 17); }
inline uint32_t p1(uint32_t x) { return x ^ rotl(x, 15) ^ rotl(x, 23); }

}  // namespace

Sm3::Sm3() {
    static const uint32_t iv[8] = {0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600,
                                   0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e};
    std::memcpy(v_, iv, sizeof v_);
}

void Sm3::block(const uint8_t * p) {
    uint32_t w[68], w1[64];
    for (int j = 0; j < 16; ++j) w[j] = uint32_t(p[4 * j]) << 24 | uint32_t(p[4 * j + 1]) << 16 | uint32_t(p[4 * j + 2]) << 8 | p[4 * j + 3];
    for (int j = 16; j < 68; ++j) w[j] = p1(w[j - 16] ^ w[j - 9] ^ rotl(w[j - 3], 15)) ^ rotl(w[j - 13], 7) ^ w[j - 6];
    for (int j = 0; j < 64; ++j) w1[j] = w[j] ^ w[j + 4];
    uint32_t a = v_[0], b = v_[1], c = v_[2], d = v_[3], e = v_[4], f = v_[5], g = v_[6], h = v_[7];
    for (int j = 0; j < 64; ++j) {
        const uint32_t t = j < 16 ? 0x79cc4519u : 0x7a879d8au;
        const uint32_t ss1 = rotl(rotl(a, 12) + e + rotl(t, j % 32), 7);
        const uint32_t ss2 = ss1 ^ rotl(a, 12);
        const uint32_t ff = j < 16 ? a ^ b ^ c : (a & b) | (a & c) | (b & c);
        const uint32_t gg = j < 16 ? e ^ f ^ g : (e & f) | (~e & g);
        const uint32_t tt1 = ff + d + ss2 + w1[j];
        const uint32_t tt2 = gg + h + ss1 + w[j];
        d = c;
        c = rotl(b, 9);
        b = a;
        a = tt1;
        h = g;
        g = rotl(f, 19);
        f = e;
        e = p0(tt2);
    }
    v_[0] ^= a, v_[1] ^= b, v_[2] ^= c, v_[3] ^= d, v_[4] ^= e, v_[5] ^= f, v_[6] ^= g, v_[7] ^= h;
}

void Sm3::update(const void * data, size_t len) {
    const uint8_t * p = static_cast<const uint8_t *>(data);
    total_ += len;
    if (used_) {
        size_t take = std::min(len, size_t(64) - used_);
        std::memcpy(buf_ + used_, p, take);
        used_ += take, p += take, len -= take;
        if (used_ < 64) return;
        block(buf_);
        used_ = 0;
    }
    for (; len >= 64; p += 64, len -= 64) block(p);
    std::memcpy(buf_, p, len);
    used_ = len;
}

std::array<uint8_t, 32> Sm3::digest() {
    const uint64_t bits = total_ * 8;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (used_ != 56) update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(bits >> (56 - 8 * i));
    update(len, 8);
    std::array<uint8_t, 32> out{};
    for (int i = 0; i < 8; ++i)
        for (int k = 0; k < 4; ++k) out[size_t(4 * i + k)] = uint8_t(v_[i] >> (24 - 8 * k));
    return out;
}

std::array<uint8_t, 32> sm3(const void * data, size_t len) {
    Sm3 h;
    h.update(data, len);
    return h.digest();
}

std::string hex(const uint8_t * p, size_t n) {
    static const char * d = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; ++i) s += d[p[i] >> 4], s += d[p[i] & 15];
    return s;
}

}  // namespace pmm
