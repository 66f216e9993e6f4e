// Minimal .npy (format 1.0) reading and writing for float32 and int64 C-order arrays.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pmm {

bool write_npy(const std::string & path, const char * descr, size_t item, const void * data,
               const std::vector<int64_t> & shape, std::string & err);
// Reads a little-endian array whose dtype descr equals `descr` ("<f4", "<i8"); fills shape and bytes.
bool read_npy(const std::string & path, const char * descr, std::vector<int64_t> & shape, std::vector<char> & bytes,
              std::string & err);

}  // namespace pmm
