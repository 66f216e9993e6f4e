// SM2 signature verification on the recommended curve: 256-bit Montgomery arithmetic with 64-bit limbs
// and Jacobian point arithmetic. Plain, not constant-time: verification handles public data only.
#include <cstring>

#include "sm.h"

namespace pmm {
namespace {

using u64 = uint64_t;
using u128 = unsigned __int128;

struct U256 {
    u64 w[4] = {0, 0, 0, 0};  // little-endian limbs
};

U256 from_be(const uint8_t * p) {
    U256 r;
    for (int i = 0; i < 32; ++i) r.w[(31 - i) / 8] |= u64(p[i]) << (8 * ((31 - i) % 8));
    return r;
}

U256 from_hex(const char * h) {
    uint8_t b[32];
    for (int i = 0; i < 32; ++i) {
        auto v = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
        b[i] = uint8_t(v(h[2 * i]) << 4 | v(h[2 * i + 1]));
    }
    return from_be(b);
}

void to_be(const U256 & a, uint8_t * p) {
    for (int i = 0; i < 32; ++i) p[i] = uint8_t(a.w[(31 - i) / 8] >> (8 * ((31 - i) % 8)));
}

int cmp(const U256 & a, const U256 & b) {
    for (int i = 3; i >= 0; --i)
        if (a.w[i] != b.w[i]) return a.w[i] < b.w[i] ? -1 : 1;
    return 0;
}

bool is_zero(const U256 & a) { return (a.w[0] | a.w[1] | a.w[2] | a.w[3]) == 0; }

u64 add(U256 & r, const U256 & a, const U256 & b) {
    u128 c = 0;
    for (int i = 0; i < 4; ++i) {
        c += u128(a.w[i]) + b.w[i];
        r.w[i] = u64(c);
        c >>= 64;
    }
    return u64(c);
}

u64 sub(U256 & r, const U256 & a, const U256 & b) {
    u64 borrow = 0;
    for (int i = 0; i < 4; ++i) {
        u128 d = u128(a.w[i]) - b.w[i] - borrow;
        r.w[i] = u64(d);
        borrow = u64(d >> 64) & 1;
    }
    return borrow;
}

struct Field {  // integers modulo an odd 256-bit m, in Montgomery form (x * 2^256 mod m)
    U256 m, r2, one;
    u64 minv;  // -m^-1 mod 2^64

    explicit Field(const U256 & mod) : m(mod) {
        u64 inv = 1;
        for (int i = 0; i < 6; ++i) inv *= 2 - m.w[0] * inv;  // Newton: inv = m^-1 mod 2^64
        minv = ~inv + 1;
        U256 x;
        x.w[0] = 1;
        for (int i = 0; i < 512; ++i) x = addm(x, x);  // 2^512 mod m
        r2 = x;
        U256 u;
        u.w[0] = 1;
        one = mul(u, r2);
    }
    U256 addm(const U256 & a, const U256 & b) const {
        U256 r, t;
        u64 carry = add(r, a, b);
        if (carry || cmp(r, m) >= 0) sub(t, r, m), r = t;
        return r;
    }
    U256 subm(const U256 & a, const U256 & b) const {
        U256 r, t;
        if (sub(r, a, b)) add(t, r, m), r = t;
        return r;
    }
    U256 mul(const U256 & a, const U256 & b) const {  // CIOS Montgomery product a * b / 2^256 mod m
        u64 t[6] = {0, 0, 0, 0, 0, 0};
        for (int i = 0; i < 4; ++i) {
            u128 c = 0;
            for (int j = 0; j < 4; ++j) {
                c += u128(a.w[j]) * b.w[i] + t[j];
                t[j] = u64(c);
                c >>= 64;
            }
            c += t[4];
            t[4] = u64(c);
            t[5] = u64(c >> 64);
            const u64 q = t[0] * minv;
            c = u128(q) * m.w[0] + t[0];
            c >>= 64;
            for (int j = 1; j < 4; ++j) {
                c += u128(q) * m.w[j] + t[j];
                t[j - 1] = u64(c);
                c >>= 64;
            }
            c += t[4];
            t[3] = u64(c);
            t[4] = t[5] + u64(c >> 64);
        }
        U256 r, s;
        r.w[0] = t[0], r.w[1] = t[1], r.w[2] = t[2], r.w[3] = t[3];
        if (t[4] || cmp(r, m) >= 0) sub(s, r, m), r = s;
        return r;
    }
    U256 to(const U256 & a) const { return mul(a, r2); }
    U256 from(const U256 & a) const {
        U256 u;
        u.w[0] = 1;
        return mul(a, u);
    }
    U256 inv(const U256 & a) const {  // a^(m-2), m prime; a in Montgomery form
        U256 e, two;
        two.w[0] = 2;
        sub(e, m, two);
        U256 r = one;
        for (int i = 255; i >= 0; --i) {
            r = mul(r, r);
            if ((e.w[i / 64] >> (i % 64)) & 1) r = mul(r, a);
        }
        return r;
    }
};

const char * kP = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF";
const char * kA = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC";
const char * kB = "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93";
const char * kNfull = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123";
const char * kGx = "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7";
const char * kGy = "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0";

struct Point {  // Jacobian (X, Y, Z) in Montgomery form; Z = 0 is the point at infinity
    U256 x, y, z;
};

struct Curve {
    Field f{from_hex(kP)};
    U256 b = f.to(from_hex(kB));

    Point dbl(const Point & p) const {  // a = -3: dbl-2001-b
        if (is_zero(p.z)) return p;
        U256 delta = f.mul(p.z, p.z), gamma = f.mul(p.y, p.y), beta = f.mul(p.x, gamma);
        U256 alpha = f.mul(f.subm(p.x, delta), f.addm(p.x, delta));
        alpha = f.addm(alpha, f.addm(alpha, alpha));
        U256 beta4 = f.addm(beta, beta);
        beta4 = f.addm(beta4, beta4);
        Point r;
        r.x = f.subm(f.mul(alpha, alpha), f.addm(beta4, beta4));
        U256 yz = f.addm(p.y, p.z);
        r.z = f.subm(f.subm(f.mul(yz, yz), gamma), delta);
        U256 g2 = f.mul(gamma, gamma);
        g2 = f.addm(g2, g2), g2 = f.addm(g2, g2), g2 = f.addm(g2, g2);
        r.y = f.subm(f.mul(alpha, f.subm(beta4, r.x)), g2);
        return r;
    }
    Point add(const Point & p, const Point & q) const {
        if (is_zero(p.z)) return q;
        if (is_zero(q.z)) return p;
        U256 z1z1 = f.mul(p.z, p.z), z2z2 = f.mul(q.z, q.z);
        U256 u1 = f.mul(p.x, z2z2), u2 = f.mul(q.x, z1z1);
        U256 s1 = f.mul(p.y, f.mul(q.z, z2z2)), s2 = f.mul(q.y, f.mul(p.z, z1z1));
        U256 h = f.subm(u2, u1), r = f.subm(s2, s1);
        if (is_zero(h)) {
            if (is_zero(r)) return dbl(p);
            return Point{};  // p = -q
        }
        U256 hh = f.mul(h, h), hhh = f.mul(h, hh), v = f.mul(u1, hh);
        Point o;
        o.x = f.subm(f.subm(f.mul(r, r), hhh), f.addm(v, v));
        o.y = f.subm(f.mul(r, f.subm(v, o.x)), f.mul(s1, hhh));
        o.z = f.mul(f.mul(p.z, q.z), h);
        return o;
    }
    Point mul(const U256 & k, const Point & p) const {
        Point r{};
        for (int i = 255; i >= 0; --i) {
            r = dbl(r);
            if ((k.w[i / 64] >> (i % 64)) & 1) r = add(r, p);
        }
        return r;
    }
    Point affine_point(const U256 & x, const U256 & y) const { return Point{f.to(x), f.to(y), f.one}; }
    bool on_curve(const Point & p) const {  // y^2 = x^3 - 3x + b (affine, z = 1)
        U256 x3 = f.mul(f.mul(p.x, p.x), p.x);
        U256 three_x = f.addm(p.x, f.addm(p.x, p.x));
        return cmp(f.mul(p.y, p.y), f.addm(f.subm(x3, three_x), b)) == 0;
    }
};

}  // namespace

bool sm2_verify_rs(const std::vector<uint8_t> & pub, const std::string & user_id, const void * message, size_t len,
                   const uint8_t r_be[32], const uint8_t s_be[32]) {
    if (pub.size() != 65 || pub[0] != 0x04 || user_id.size() > 8191) return false;
    static const Curve curve;
    const U256 n = from_hex(kNfull), r = from_be(r_be), s = from_be(s_be);
    if (is_zero(r) || is_zero(s) || cmp(r, n) >= 0 || cmp(s, n) >= 0) return false;
    const Point q = curve.affine_point(from_be(&pub[1]), from_be(&pub[33]));
    if (cmp(from_be(&pub[1]), curve.f.m) >= 0 || cmp(from_be(&pub[33]), curve.f.m) >= 0 || !curve.on_curve(q)) return false;
    // Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA), e = SM3(Z_A || M)
    Sm3 z;
    const uint16_t entl = uint16_t(user_id.size() * 8);
    const uint8_t entl_be[2] = {uint8_t(entl >> 8), uint8_t(entl)};
    z.update(entl_be, 2);
    z.update(user_id.data(), user_id.size());
    uint8_t buf[32];
    for (const char * c : {kA, kB, kGx, kGy}) {
        to_be(from_hex(c), buf);
        z.update(buf, 32);
    }
    z.update(&pub[1], 64);
    std::array<uint8_t, 32> za = z.digest();
    Sm3 h;
    h.update(za.data(), 32);
    h.update(message, len);
    std::array<uint8_t, 32> e_be = h.digest();
    U256 t, tmp;
    if (add(t, r, s) || cmp(t, n) >= 0) sub(tmp, t, n), t = tmp;  // t = (r + s) mod n
    if (is_zero(t)) return false;
    const Point g = curve.affine_point(from_hex(kGx), from_hex(kGy));
    Point sum = curve.add(curve.mul(s, g), curve.mul(t, q));
    if (is_zero(sum.z)) return false;
    const U256 zinv = curve.f.inv(sum.z);
    U256 x1 = curve.f.from(curve.f.mul(sum.x, curve.f.mul(zinv, zinv)));
    if (cmp(x1, n) >= 0) sub(tmp, x1, n), x1 = tmp;
    U256 e = from_be(e_be.data());
    if (cmp(e, n) >= 0) sub(tmp, e, n), e = tmp;
    U256 big_r;
    if (add(big_r, e, x1) || cmp(big_r, n) >= 0) sub(tmp, big_r, n), big_r = tmp;  // R = (e + x1) mod n
    return cmp(big_r, r) == 0;
}

// DER SEQUENCE { INTEGER r, INTEGER s }, strict (minimal lengths, positive, at most 32 significant bytes).
bool sm2_verify(const std::vector<uint8_t> & pub, const std::string & user_id, const void * message, size_t len,
                const std::vector<uint8_t> & der) {
    size_t pos = 0;
    if (der.size() < 8 || der.size() > 72 || der[pos++] != 0x30 || der[pos++] != der.size() - 2) return false;
    uint8_t rs[2][32];
    for (auto & out : rs) {
        if (pos + 2 > der.size() || der[pos++] != 0x02) return false;
        size_t n = der[pos++];
        if (n == 0 || n > 33 || pos + n > der.size() || (der[pos] & 0x80)) return false;
        if (n > 1 && der[pos] == 0 && !(der[pos + 1] & 0x80)) return false;  // not minimal
        if (n == 33) {
            if (der[pos] != 0) return false;
            ++pos, --n;
        }
        std::memset(out, 0, 32);
        std::memcpy(out + 32 - n, &der[pos], n);
        pos += n;
    }
    return pos == der.size() && sm2_verify_rs(pub, user_id, message, len, rs[0], rs[1]);
}

}  // namespace pmm
