#include "text.h"

#include <algorithm>

namespace pmm {

std::u32string utf8_decode(const std::string & s) {
    std::u32string out;
    size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char c = s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) { ++i; continue; }
        uint32_t cp = len == 1 ? c : c & (0x7F >> len);
        bool ok = true;
        for (int k = 1; k < len; ++k) {
            unsigned char d = s[i + k];
            if ((d & 0xC0) != 0x80) { ok = false; break; }
            cp = (cp << 6) | (d & 0x3F);
        }
        static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (!ok || cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { ++i; continue; }
        out.push_back(cp);
        i += len;
    }
    return out;
}

std::string utf8_encode(const std::u32string & s) {
    std::string out;
    for (uint32_t cp : s) {
        if (cp < 0x80) {
            out.push_back(char(cp));
        } else if (cp < 0x800) {
            out.push_back(char(0xC0 | (cp >> 6)));
            out.push_back(char(0x80 | (cp & 0x3F)));
        } else if (cp < 0x10000) {
            out.push_back(char(0xE0 | (cp >> 12)));
            out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
            out.push_back(char(0x80 | (cp & 0x3F)));
        } else {
            out.push_back(char(0xF0 | (cp >> 18)));
            out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
            out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
            out.push_back(char(0x80 | (cp & 0x3F)));
        }
    }
    return out;
}

void Tokenizer::init(std::vector<std::string> tokens, std::vector<uint32_t> ranges,
                     const std::vector<uint32_t> & fold_from, const std::vector<std::string> & fold_to,
                     int context_length, int pad, int unk, int cls, int sep) {
    vocab_.clear();
    max_piece_len_ = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i].empty()) continue;  // an id whose token a later duplicate took over
        vocab_[tokens[i]] = int(i);
        max_piece_len_ = std::max(max_piece_len_, utf8_decode(tokens[i]).size());
    }
    range_start_.clear();
    range_bits_.clear();
    for (size_t i = 0; i + 1 < ranges.size(); i += 2) {
        range_start_.push_back(ranges[i]);
        range_bits_.push_back(ranges[i + 1]);
    }
    fold_.clear();
    for (size_t i = 0; i < fold_from.size(); ++i) fold_[fold_from[i]] = utf8_decode(fold_to[i]);
    context_length_ = context_length;
    pad_ = pad, unk_ = unk, cls_ = cls, sep_ = sep;
}

uint32_t Tokenizer::bits(uint32_t cp) const {
    auto it = std::upper_bound(range_start_.begin(), range_start_.end(), cp);
    return it == range_start_.begin() ? 0 : range_bits_[size_t(it - range_start_.begin()) - 1];
}

void Tokenizer::wordpiece(const std::u32string & piece, std::vector<int> & out) const {
    const size_t n = piece.size();
    if (n > 200) {  // BERT's max_input_chars_per_word
        out.push_back(unk_);
        return;
    }
    std::vector<int> ids;
    size_t start = 0;
    while (start < n) {
        size_t end = std::min(n, start + max_piece_len_);
        bool found = false;
        while (end > start) {
            std::string sub = utf8_encode(piece.substr(start, end - start));
            if (start > 0) sub = "##" + sub;
            auto it = vocab_.find(sub);
            if (it != vocab_.end()) {
                ids.push_back(it->second);
                found = true;
                break;
            }
            --end;
        }
        if (!found) {
            out.push_back(unk_);
            return;
        }
        start = end;
    }
    out.insert(out.end(), ids.begin(), ids.end());
}

// One whitespace/CJK-delimited word: drop removed characters, lower-case and strip accents (fold),
// split off punctuation, then WordPiece each remaining piece.
// Python's str.lower turns a capital sigma into a final sigma when a cased letter precedes it and none
// follows (case-ignorable characters skipped both ways): Unicode's Final_Sigma condition.
bool Tokenizer::final_sigma(const std::u32string & word, size_t i) const {
    size_t j = i;
    while (j > 0 && (bits(word[j - 1]) & kCaseIgnorable)) --j;
    if (j == 0 || !(bits(word[j - 1]) & kCased)) return false;
    for (j = i + 1; j < word.size() && (bits(word[j]) & kCaseIgnorable); ++j) {
    }
    return j == word.size() || !(bits(word[j]) & kCased);
}

void Tokenizer::word_ids(const std::u32string & raw, std::vector<int> & out) const {
    std::u32string word, folded;
    for (uint32_t cp : raw)
        if (!(bits(cp) & kRemoved)) word.push_back(cp);
    for (size_t i = 0; i < word.size(); ++i) {
        const uint32_t cp = word[i];
        if (cp == 0x3A3 && final_sigma(word, i)) {
            folded.push_back(0x3C2);
            continue;
        }
        auto it = fold_.find(cp);
        if (it == fold_.end()) folded.push_back(cp);
        else folded += it->second;
    }
    std::u32string current;
    for (uint32_t cp : folded) {
        uint32_t b = bits(cp);
        if (b & (kPunct | kSeparator)) {
            if (!current.empty()) wordpiece(current, out);
            current.clear();
            if (b & kPunct) wordpiece(std::u32string(1, cp), out);
        } else {
            current.push_back(cp);
        }
    }
    if (!current.empty()) wordpiece(current, out);
}

std::vector<int> Tokenizer::piece_ids(const std::string & utf8, size_t limit) const {
    std::vector<int> out;
    std::u32string word;
    auto flush = [&]() {
        if (!word.empty()) word_ids(word, out);
        word.clear();
    };
    for (uint32_t cp : utf8_decode(utf8)) {
        if (out.size() >= limit) break;
        uint32_t b = bits(cp);
        if (b & kSeparator) {
            flush();
        } else if (b & kCjk) {
            flush();
            word.push_back(cp);
            flush();
        } else {
            word.push_back(cp);
        }
    }
    flush();
    if (out.size() > limit) out.resize(limit);
    return out;
}

std::vector<int64_t> Tokenizer::encode(const std::string & utf8) const {
    std::vector<int64_t> ids(size_t(context_length_), pad_);
    std::vector<int> pieces = piece_ids(utf8, size_t(context_length_ - 2));
    ids[0] = cls_;
    for (size_t i = 0; i < pieces.size(); ++i) ids[i + 1] = pieces[i];
    ids[pieces.size() + 1] = sep_;
    return ids;
}

}  // namespace pmm
