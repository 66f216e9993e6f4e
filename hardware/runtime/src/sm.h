// SM3 (GB/T 32905) and SM2 signature verification (GB/T 32918, recommended curve), written for the
// board runtime because no SM2/SM3 C library reaches the boards through the registries without a long
// OpenSSL cross build. Verification only: no secret is ever handled, so nothing here needs to be
// constant-time. Checked against the standard vectors and against paddle_mm.package on every package
// the tests build (tests/boards/test_verified_loading.py).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace pmm {

class Sm3 {
public:
    Sm3();
    void update(const void * data, size_t len);
    std::array<uint8_t, 32> digest();  // finishes; the object must not be updated afterwards

private:
    void block(const uint8_t * p);
    uint32_t v_[8];
    uint8_t buf_[64];
    size_t used_ = 0;
    uint64_t total_ = 0;
};

std::array<uint8_t, 32> sm3(const void * data, size_t len);
std::string hex(const uint8_t * p, size_t n);

// Verify a DER SEQUENCE{r, s} SM2-with-SM3 signature of `message` by the public key 04||X||Y (65 bytes)
// with distinguishing ID `user_id` (e = SM3(Z_A || M)).
bool sm2_verify(const std::vector<uint8_t> & pubkey65, const std::string & user_id, const void * message, size_t len,
                const std::vector<uint8_t> & der_signature);
// The same with raw 32-byte big-endian r and s (for the standard's test vector).
bool sm2_verify_rs(const std::vector<uint8_t> & pubkey65, const std::string & user_id, const void * message, size_t len,
                   const uint8_t r[32], const uint8_t s[32]);

}  // namespace pmm
