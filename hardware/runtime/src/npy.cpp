#include "npy.h"

#include <cstdio>
#include <cstring>

namespace pmm {

bool write_npy(const std::string & path, const char * descr, size_t item, const void * data,
               const std::vector<int64_t> & shape, std::string & err) {
    std::string dims;
    size_t count = 1;
    for (int64_t d : shape) {
        dims += std::to_string(d) + ", ";
        count *= size_t(d);
    }
    if (shape.size() > 1) dims.resize(dims.size() - 1), dims.back() = ' ', dims.pop_back();
    std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
    header.append(63 - (10 + header.size()) % 64, ' ');  // pad so that the data starts at a multiple of 64
    header.push_back('\n');
    FILE * f = std::fopen(path.c_str(), "wb");
    if (!f) {
        err = "cannot write " + path + "; check that the directory exists and is writable";
        return false;
    }
    const uint16_t len = uint16_t(header.size());
    const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    bool ok = std::fwrite(magic, 1, 8, f) == 8 && std::fputc(len & 0xFF, f) != EOF && std::fputc(len >> 8, f) != EOF &&
              std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
              std::fwrite(data, item, count, f) == count;
    ok = std::fclose(f) == 0 && ok;
    if (!ok) err = "cannot write " + path + " (disk full?)";
    return ok;
}

bool read_npy(const std::string & path, const char * descr, std::vector<int64_t> & shape, std::vector<char> & bytes,
              std::string & err) {
    FILE * f = std::fopen(path.c_str(), "rb");
    if (!f) {
        err = "cannot open " + path;
        return false;
    }
    unsigned char pre[10];
    std::string header;
    bool ok = std::fread(pre, 1, 10, f) == 10 && std::memcmp(pre, "\x93NUMPY", 6) == 0 && pre[6] == 1;
    if (ok) {
        header.resize(size_t(pre[8] | (pre[9] << 8)));
        ok = std::fread(&header[0], 1, header.size(), f) == header.size();
    }
    ok = ok && header.find(std::string("'descr': '") + descr + "'") != std::string::npos &&
         header.find("'fortran_order': False") != std::string::npos;
    size_t open = header.find("'shape': ("), close = header.find(')', open);
    ok = ok && open != std::string::npos && close != std::string::npos;
    size_t count = 1;
    if (ok) {
        shape.clear();
        const char * p = header.c_str() + open + 10;
        while (*p && *p != ')') {
            char * end = nullptr;
            long long d = std::strtoll(p, &end, 10);
            if (end == p) break;
            shape.push_back(d);
            count *= size_t(d);
            p = end;
            while (*p == ',' || *p == ' ') ++p;
        }
        size_t item = descr[2] == '4' ? 4 : 8;
        bytes.resize(count * item);
        ok = std::fread(bytes.data(), 1, bytes.size(), f) == bytes.size();
    }
    std::fclose(f);
    if (!ok) err = path + " is not a C-order " + descr + " .npy array; save it with numpy.save(path, a.astype(...))";
    return ok;
}

}  // namespace pmm
