// WordPiece tokenizer equal to paddle_mm.text.WordPieceTokenizer (BERT basic tokenizer + WordPiece).
// The Unicode knowledge (which characters split, are CJK, are removed, are punctuation, and how each
// one lower-cases and loses its accents) comes from the tables the converter wrote from Python's
// unicodedata, so both sides agree by construction.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace pmm {

class Tokenizer {
public:
    enum : uint32_t { kSeparator = 1, kCjk = 2, kRemoved = 4, kPunct = 8, kCased = 16, kCaseIgnorable = 32 };

    void init(std::vector<std::string> tokens, std::vector<uint32_t> ranges, const std::vector<uint32_t> & fold_from,
              const std::vector<std::string> & fold_to, int context_length, int pad, int unk, int cls, int sep);
    // [CLS] + pieces + [SEP] + [PAD]..., exactly context_length ids.
    std::vector<int64_t> encode(const std::string & utf8) const;
    std::vector<int> piece_ids(const std::string & utf8, size_t limit) const;

private:
    uint32_t bits(uint32_t cp) const;
    bool final_sigma(const std::u32string & word, size_t i) const;
    void word_ids(const std::u32string & word, std::vector<int> & out) const;
    void wordpiece(const std::u32string & piece, std::vector<int> & out) const;

    std::unordered_map<std::string, int> vocab_;
    std::vector<uint32_t> range_start_, range_bits_;
    std::unordered_map<uint32_t, std::u32string> fold_;
    size_t max_piece_len_ = 0;
    int context_length_ = 0, pad_ = 0, unk_ = 0, cls_ = 0, sep_ = 0;
};

std::u32string utf8_decode(const std::string & s);  // invalid bytes are skipped
std::string utf8_encode(const std::u32string & s);

}  // namespace pmm
