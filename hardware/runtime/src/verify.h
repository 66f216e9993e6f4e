// Verification of a signed paddle_mm package (paddle_mm.package / tools/package.py format) before the
// runtime loads anything from it: SM2-with-SM3 signature over PACKAGE.manifest by a locally trusted key,
// then the manifest's claims, the exact file set, sizes and the SM3 digest of every chunk.
#pragma once

#include <string>
#include <vector>

namespace pmm {

struct VerifyResult {
    bool ok = false;
    std::string message;  // why it was refused (one line), empty when ok
    std::string model, version;
    std::vector<std::string> paths;  // the signed files
    bool covers(const std::string & path) const;
};

// trust_pem: the signer's public key (SPKI PEM, as `tools/package.py keygen` writes signer.pub);
// expect_model: refuse a package signed for another model name (empty: accept any).
VerifyResult verify_package(const std::string & dir, const std::string & trust_pem, const std::string & expect_model,
                            const std::string & user_id = "1234567812345678");

}  // namespace pmm
