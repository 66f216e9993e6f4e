#include "verify.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <set>

#include "sm.h"

namespace pmm {
namespace {

const std::string kMagic = "paddle_mm model package manifest v1\n";
constexpr size_t kMaxManifest = 16u << 20, kMaxSignature = 256;

struct Refused {
    std::string message;
};

bool read_file(const std::string & path, size_t limit, std::string & out, std::string & why) {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return why = "missing", false;
    if (!S_ISREG(st.st_mode)) return why = "not a regular file", false;
    if (size_t(st.st_size) > limit) return why = std::to_string(st.st_size) + " bytes, more than the " + std::to_string(limit) + " allowed", false;
    FILE * f = std::fopen(path.c_str(), "rb");
    if (!f) return why = "unreadable", false;
    out.resize(size_t(st.st_size));
    const bool ok = std::fread(&out[0], 1, out.size(), f) == out.size();
    std::fclose(f);
    return ok || (why = "unreadable", false);
}

// A tiny JSON reader for the manifest's canonical subset: objects, arrays, ASCII strings with escapes,
// non-negative integers, null. Anything else is refused.
struct Json {
    enum Kind { Null, Int, Str, Arr, Obj } kind = Null;
    unsigned long long num = 0;
    std::string str;
    std::vector<Json> items;
    std::map<std::string, Json> fields;
    const Json * get(const std::string & k) const {
        auto it = fields.find(k);
        return it == fields.end() ? nullptr : &it->second;
    }
};

struct Parser {
    const std::string & s;
    size_t i = 0;
    int depth = 0;
    [[noreturn]] void fail() { throw Refused{"manifest JSON is malformed near byte " + std::to_string(kMagic.size() + i)}; }
    void expect(char c) {
        if (i >= s.size() || s[i] != c) fail();
        ++i;
    }
    std::string string() {
        expect('"');
        std::string out;
        while (i < s.size() && s[i] != '"') {
            char c = s[i++];
            if (c == '\\') {
                if (i >= s.size()) fail();
                char e = s[i++];
                if (e == 'u') {
                    if (i + 4 > s.size()) fail();
                    unsigned v = unsigned(std::stoul(s.substr(i, 4), nullptr, 16));
                    i += 4;
                    if (v >= 0xD800 && v <= 0xDFFF) fail();  // paths and names are checked as BMP text
                    if (v < 0x80) out.push_back(char(v));
                    else if (v < 0x800) out += char(0xC0 | (v >> 6)), out += char(0x80 | (v & 0x3F));
                    else out += char(0xE0 | (v >> 12)), out += char(0x80 | ((v >> 6) & 0x3F)), out += char(0x80 | (v & 0x3F));
                } else {
                    const char * from = "\"\\/bfnrt", * to = "\"\\/\b\f\n\r\t";
                    const char * at = std::strchr(from, e);
                    if (!at || !e) fail();
                    out.push_back(to[at - from]);
                }
            } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x80) {
                fail();
            } else {
                out.push_back(c);
            }
        }
        expect('"');
        return out;
    }
    Json value() {
        if (i >= s.size() || ++depth > 6) fail();
        Json v;
        if (s[i] == '{') {
            v.kind = Json::Obj;
            ++i;
            while (i < s.size() && s[i] != '}') {
                if (!v.fields.empty()) expect(',');
                std::string k = string();
                expect(':');
                if (!v.fields.emplace(k, value()).second) fail();  // duplicate key
            }
            expect('}');
        } else if (s[i] == '[') {
            v.kind = Json::Arr;
            ++i;
            while (i < s.size() && s[i] != ']') {
                if (!v.items.empty()) expect(',');
                v.items.push_back(value());
            }
            expect(']');
        } else if (s[i] == '"') {
            v.kind = Json::Str;
            v.str = string();
        } else if (s.compare(i, 4, "null") == 0) {
            i += 4;
        } else if (s[i] >= '0' && s[i] <= '9') {
            v.kind = Json::Int;
            size_t start = i;
            while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
            if (i - start > 19 || (s[start] == '0' && i - start > 1)) fail();
            v.num = std::stoull(s.substr(start, i - start));
        } else {
            fail();
        }
        --depth;
        return v;
    }
};

const Json & field(const Json & obj, const std::string & key, Json::Kind kind) {
    const Json * v = obj.kind == Json::Obj ? obj.get(key) : nullptr;
    if (!v || v->kind != kind) throw Refused{"manifest field '" + key + "' is missing or has the wrong type"};
    return *v;
}

std::vector<uint8_t> base64(const std::string & text) {
    std::vector<uint8_t> out;
    unsigned acc = 0;
    int bits = 0;
    for (char c : text) {
        int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '+' ? 62 : c == '/' ? 63 : -1;
        if (v < 0) continue;
        acc = (acc << 6) | unsigned(v);
        bits += 6;
        if (bits >= 8) bits -= 8, out.push_back(uint8_t(acc >> bits));
    }
    return out;
}

// SPKI PEM -> (DER, 65-byte point). The DER must name the SM2 curve and end in the BIT STRING 00 04 X Y.
void read_public_key(const std::string & path, std::vector<uint8_t> & der, std::vector<uint8_t> & point) {
    std::string pem, why;
    if (!read_file(path, 64 << 10, pem, why)) throw Refused{"trust key " + path + ": " + why};
    const std::string begin = "-----BEGIN PUBLIC KEY-----", end = "-----END PUBLIC KEY-----";
    size_t a = pem.find(begin), b = pem.find(end);
    if (a == std::string::npos || b == std::string::npos || b < a)
        throw Refused{"trust key " + path + " is not a PEM public key; pass the signer.pub that tools/package.py keygen wrote"};
    der = base64(pem.substr(a + begin.size(), b - a - begin.size()));
    static const uint8_t sm2_oid[] = {0x06, 0x08, 0x2A, 0x81, 0x1C, 0xCF, 0x55, 0x01, 0x82, 0x2D};
    static const uint8_t bit_string[] = {0x03, 0x42, 0x00, 0x04};
    const bool has_oid = std::search(der.begin(), der.end(), std::begin(sm2_oid), std::end(sm2_oid)) != der.end();
    if (der.size() < 70 || !has_oid || !std::equal(std::begin(bit_string), std::end(bit_string), der.end() - 68))
        throw Refused{"trust key " + path + " is not an SM2 public key (curve 1.2.156.10197.1.301)"};
    point.assign(der.end() - 65, der.end());
}

// Relative POSIX path with no empty, '.' or '..' part and no backslash or control character.
bool safe_path(const std::string & p) {
    if (p.empty() || p.size() > 1024 || p[0] == '/') return false;
    size_t start = 0;
    while (start <= p.size()) {
        size_t end = p.find('/', start);
        if (end == std::string::npos) end = p.size();
        std::string part = p.substr(start, end - start);
        if (part.empty() || part == "." || part == "..") return false;
        start = end + 1;
    }
    for (unsigned char c : p)
        if (c < 0x20 || c == '\\' || c == 0x7F) return false;
    return true;
}

// Every regular file under dir (relative paths); symlinks and special files are refused.
void walk(const std::string & dir, const std::string & rel, std::set<std::string> & out, int depth) {
    if (depth > 32) throw Refused{"package is nested more than 32 directories deep"};
    std::unique_ptr<DIR, int (*)(DIR *)> d(opendir(dir.c_str()), closedir);
    if (!d) throw Refused{"cannot list " + dir};
    while (dirent * e = readdir(d.get())) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        std::string path = dir + "/" + name, r = rel.empty() ? name : rel + "/" + name;
        struct stat st;
        if (lstat(path.c_str(), &st) != 0) throw Refused{"cannot stat " + r};
        if (S_ISLNK(st.st_mode)) throw Refused{r + " is a symlink; a package holds regular files only"};
        if (S_ISDIR(st.st_mode)) walk(path, r, out, depth + 1);
        else if (S_ISREG(st.st_mode)) out.insert(r);
        else throw Refused{r + " is not a regular file"};
        if (out.size() > 100000) throw Refused{"package holds more than 100000 files"};
    }
}

time_t parse_utc(const std::string & t) {  // "YYYY-MM-DDTHH:MM:SSZ"
    std::tm tm{};
    if (t.size() != 20 || std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                                      &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        throw Refused{"manifest time '" + t + "' is not YYYY-MM-DDTHH:MM:SSZ"};
    tm.tm_year -= 1900, tm.tm_mon -= 1;
    return timegm(&tm);
}

void check_file(const std::string & dir, const Json & entry, unsigned long long chunk_size) {
    const std::string & path = field(entry, "path", Json::Str).str;
    const unsigned long long size = field(entry, "size", Json::Int).num;
    const std::vector<Json> & chunks = field(entry, "chunks", Json::Arr).items;
    const unsigned long long expected_chunks = size == 0 ? 1 : (size + chunk_size - 1) / chunk_size;
    if (chunks.size() != expected_chunks) throw Refused{path + ": manifest lists " + std::to_string(chunks.size()) + " chunk digests for " + std::to_string(size) + " bytes"};
    struct stat st;
    const std::string full = dir + "/" + path;
    FILE * f = std::fopen(full.c_str(), "rb");
    if (!f || fstat(fileno(f), &st) != 0) {
        if (f) std::fclose(f);
        throw Refused{path + " is missing or unreadable"};
    }
    std::unique_ptr<FILE, int (*)(FILE *)> closer(f, std::fclose);
    if ((unsigned long long) st.st_size != size)
        throw Refused{path + " is " + std::to_string(st.st_size) + " bytes, signed as " + std::to_string(size) + "; copy the package again"};
    std::vector<uint8_t> buf(size_t(std::min(chunk_size, 1ull << 20)));
    for (size_t c = 0; c < chunks.size(); ++c) {
        Sm3 h;
        unsigned long long left = std::min(chunk_size, size - std::min(size, c * chunk_size));
        while (left) {
            size_t n = std::fread(buf.data(), 1, size_t(std::min<unsigned long long>(left, buf.size())), f);
            if (n == 0) throw Refused{path + " could not be read completely"};
            h.update(buf.data(), n);
            left -= n;
        }
        std::array<uint8_t, 32> d = h.digest();
        if (chunks[c].kind != Json::Str || hex(d.data(), 32) != chunks[c].str)
            throw Refused{path + ": SM3 of chunk " + std::to_string(c) + " (offset " + std::to_string(c * chunk_size) + ") is " +
                          hex(d.data(), 32).substr(0, 16) + "..., not the signed digest; the file was changed or corrupted"};
    }
}

}  // namespace

bool VerifyResult::covers(const std::string & path) const { return std::find(paths.begin(), paths.end(), path) != paths.end(); }

VerifyResult verify_package(const std::string & dir, const std::string & trust_pem, const std::string & expect_model,
                            const std::string & user_id) {
    VerifyResult res;
    try {
        std::string manifest, sig_bytes, why;
        if (!read_file(dir + "/PACKAGE.manifest", kMaxManifest, manifest, why)) throw Refused{"PACKAGE.manifest: " + why + " (an unsigned package is refused)"};
        if (!read_file(dir + "/PACKAGE.sig", kMaxSignature, sig_bytes, why)) throw Refused{"PACKAGE.sig: " + why + " (an unsigned package is refused)"};
        struct stat st;
        if (lstat((dir + "/PACKAGE.keys").c_str(), &st) == 0) throw Refused{"encrypted packages are not supported by the board runtime; decrypt on a trusted host first"};
        if (manifest.compare(0, kMagic.size(), kMagic) != 0 || manifest.back() != '\n') throw Refused{"PACKAGE.manifest is not a paddle_mm manifest (magic line)"};
        std::vector<uint8_t> der, point;
        read_public_key(trust_pem, der, point);
        const std::array<uint8_t, 32> key_digest = sm3(der.data(), der.size());
        const std::string key_id = hex(key_digest.data(), 32);
        // Signature first, on the raw bytes; the JSON is parsed only once it verifies.
        const std::string signer = "\"signer\":{\"key_id\":\"" + key_id + "\",\"user_id\":\"" + user_id + "\"}";
        if (manifest.find(signer) == std::string::npos)
            throw Refused{"manifest is not signed by the trusted key " + key_id.substr(0, 16) + "... with user ID " + user_id + "; pass the signer's public key with --trust"};
        std::vector<uint8_t> sig(sig_bytes.begin(), sig_bytes.end());
        if (!sm2_verify(point, user_id, manifest.data(), manifest.size(), sig))
            throw Refused{"SM2 signature does not verify with key " + key_id.substr(0, 16) + "...: the manifest or signature was changed"};
        const std::string body = manifest.substr(kMagic.size(), manifest.size() - kMagic.size() - 1);
        Parser parser{body};
        Json m = parser.value();
        if (parser.i != body.size()) parser.fail();
        const Json & signer_obj = field(m, "signer", Json::Obj);
        if (field(signer_obj, "key_id", Json::Str).str != key_id || field(signer_obj, "user_id", Json::Str).str != user_id)
            throw Refused{"manifest signer fields do not match the verified signer"};
        if (field(m, "format_version", Json::Int).num != 1) throw Refused{"manifest format_version is not 1; update the board runtime"};
        const Json & alg = field(m, "algorithms", Json::Obj);
        if (field(alg, "hash", Json::Str).str != "sm3" || field(alg, "signature", Json::Str).str != "sm2-sm3")
            throw Refused{"manifest algorithms are not sm3 / sm2-sm3"};
        res.model = field(m, "model", Json::Str).str;
        res.version = field(m, "version", Json::Str).str;
        if (!expect_model.empty() && res.model != expect_model)
            throw Refused{"package is signed for model '" + res.model + "', not '" + expect_model + "'"};
        const Json * expires = m.get("expires");
        if (expires && expires->kind == Json::Str && parse_utc(expires->str) <= std::time(nullptr))
            throw Refused{"package expired at " + expires->str + "; ask the publisher for a current one"};
        const unsigned long long chunk_size = field(m, "chunk_size", Json::Int).num;
        if (chunk_size < (64u << 10) || chunk_size > (64u << 20)) throw Refused{"manifest chunk_size " + std::to_string(chunk_size) + " is outside 64 KiB .. 64 MiB"};
        std::set<std::string> signed_paths, on_disk;
        for (const Json & entry : field(m, "files", Json::Arr).items) {
            const std::string & p = field(entry, "path", Json::Str).str;
            if (!safe_path(p) || p.rfind("PACKAGE.", 0) == 0) throw Refused{"manifest path '" + p + "' is not a safe relative path"};
            if (!signed_paths.insert(p).second) throw Refused{"manifest lists '" + p + "' twice"};
        }
        walk(dir, "", on_disk, 0);
        on_disk.erase("PACKAGE.manifest"), on_disk.erase("PACKAGE.sig");
        for (const std::string & p : on_disk)
            if (!signed_paths.count(p)) throw Refused{p + " is in the package directory but not signed; remove it"};
        for (const std::string & p : signed_paths)
            if (!on_disk.count(p)) throw Refused{p + " is signed but missing from the package directory"};
        for (const Json & entry : field(m, "files", Json::Arr).items) check_file(dir, entry, chunk_size);
        res.paths.assign(signed_paths.begin(), signed_paths.end());
        res.ok = true;
    } catch (const Refused & r) {
        res.message = r.message;
    } catch (const std::exception & e) {
        res.message = std::string("malformed manifest (") + e.what() + ")";
    }
    return res;
}

}  // namespace pmm
